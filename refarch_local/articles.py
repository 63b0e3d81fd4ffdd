"""The second example source: support articles (refarch/source/definitions/articles.toml).

A table made the way its owner would make it, outside the project's migrations: a uuid key, a long
body, an author, a published flag, and columns the definition does not name (views, created_at),
so a change to them must sync nothing. `seed` writes deterministic articles: article i depends only
on i, and seeding again adds only the articles not there yet.
"""

from __future__ import annotations

import random
import uuid

import psycopg2.extras

from refarch.db import Connection, fetch_one

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS articles (
    article_id uuid        PRIMARY KEY,
    title      text        NOT NULL,
    author     text        NOT NULL,
    published  boolean     NOT NULL DEFAULT false,
    body       text        NOT NULL DEFAULT '',
    views      integer     NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""

AUTHORS = ("Ada Ortiz", "Ben Okafor", "Chen Wei", "Dana Petrov", "Eli Haddad")
# (topic, what goes wrong, what fixes it): every article is a question and its answer.
TOPICS = (
    ("password reset", "the reset email never arrives", "check the spam folder and allow our sending domain"),
    ("two-factor sign-in", "codes from the authenticator app are refused", "set the phone's clock to automatic"),
    ("invoice download", "the PDF opens blank", "open it in another viewer or download it again"),
    ("data export", "the CSV shows broken accents", "import it as UTF-8 instead of opening it directly"),
    ("team invitations", "an invited colleague sees an expired link", "send the invitation again from Settings"),
    ("mobile sync", "changes made offline do not appear", "open the app on Wi-Fi and pull down to refresh"),
    ("billing address", "the tax on the invoice is wrong", "correct the billing country before the next cycle"),
    ("API tokens", "requests fail with 401", "create a new token; old ones stop after 90 days"),
)
PARAGRAPH = (
    "If {problem}, you are not alone: it is the most common question about {topic}. "
    "In most cases the fix is simple: {fix}. "
    "Our support team answers within a day if that does not help."
)


# Every LONG_EVERY-th article is a long guide (a dozen to thirty paragraphs).
LONG_EVERY = 7
STEPS = (
    "Open Settings and choose {topic}.",
    "Sign out on every device, then sign in again on one.",
    "Clear the browser's cache for our site and reload the page.",
    "Check that the account's plan includes {topic}.",
    "Ask an administrator of the workspace to look at the audit log.",
    "Try again from a private window, without extensions.",
    "Write down the time it happened and the exact message shown.",
    "Compare the settings with a colleague whose {topic} works.",
)


def guide(i: int, paragraphs: int, *, start: int = 0) -> list[str]:
    """Paragraphs of a troubleshooting guide for article i, numbered from `start + 1`: each step of it
    says one thing to try and what to look for after it, and no two steps of one guide are the same."""
    topic = TOPICS[i % len(TOPICS)][0]
    return [
        f"Step {n + 1}. {STEPS[(n + i) % len(STEPS)].format(topic=topic)} If that changes nothing, note what you"
        f" saw at step {n + 1} and go on: the next step checks another part of {topic} (guide {i}, part {n + 1})."
        for n in range(start, start + paragraphs)
    ]


def article_id(i: int) -> uuid.UUID:
    """Article i's key: the same on every run."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"https://example.com/articles/{i}")


def article(i: int) -> dict[str, object]:
    rng = random.Random(i)
    topic, problem, fix = TOPICS[i % len(TOPICS)]
    paragraphs = [PARAGRAPH.format(problem=problem, topic=topic, fix=fix)]
    paragraphs += [
        f"Note {n + 1}: article {i} also covers {rng.choice(TOPICS)[0]} for accounts created before {2015 + n}."
        for n in range(rng.randint(0, 4))
    ]
    if i % LONG_EVERY == 0:
        # Some articles are guides of many paragraphs: indexed as several chunks (refarch.source.chunking).
        paragraphs += guide(i, rng.randint(12, 30))
    return {
        "article_id": str(article_id(i)),
        "title": f"{topic.capitalize()}: {problem} (#{i})",
        "author": AUTHORS[i % len(AUTHORS)],
        "published": i % 4 != 0,
        "body": "\n\n".join(paragraphs),
    }


def create_table(conn: Connection) -> None:
    """The articles table, as its owner made it (no column the project needs)."""
    with conn.cursor() as cur:
        cur.execute(TABLE_DDL)


def seed(conn: Connection, rows: int) -> int:
    """Insert articles 1..rows that are not there yet; return how many were inserted."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM articles")
        before = int(fetch_one(cur)[0])
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO articles (article_id, title, author, published, body)"
            " VALUES %s ON CONFLICT (article_id) DO NOTHING",
            [tuple(article(i).values()) for i in range(1, rows + 1)],
            page_size=1000,
        )
        cur.execute("SELECT count(*) FROM articles")
        return int(fetch_one(cur)[0]) - before
