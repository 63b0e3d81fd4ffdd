-- Two least-privilege fixes for the public web site (issue #24).
--
-- 1. The web role may no longer rewrite index_generations (0010 granted it UPDATE on the embedder
--    and target columns so that whichever runtime started first could record generation 1). A
--    compromised web task could otherwise point search at another index. Recording ("adoption",
--    refarch.generations.adopt) is left to Emu, which also needs the right to lock the live
--    generations FOR SHARE while it writes; the web app searches the configured target until
--    Emu's first run has recorded it (refarch.generations.targets).
REVOKE UPDATE (embedder, model_id, dimension, backend, target) ON index_generations FROM refarch_web;

-- 2. Server-side sign-ins, so that signing out revokes a session even where a copy of its cookie
--    lives on (web/auth.py). The cookie carries the row's id; signing out deletes the row, and a
--    row past expires_at no longer counts (expired rows are deleted at the next sign-in).
CREATE TABLE editor_sessions (
    id         text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX editor_sessions_expires_idx ON editor_sessions (expires_at);

GRANT SELECT, INSERT, DELETE ON editor_sessions TO refarch_web;
