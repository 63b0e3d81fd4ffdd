"""The timeouts in front of a search, as synthesized, agree with the search budget (refarch.serving)."""

from __future__ import annotations

import pytest

from refarch.serving import RERANK_TIMEOUT_SECONDS, SEARCH_BUDGET, SEMANTIC_SEARCH_SLOTS, WEB_WORKERS
from refarch.settings import Settings
from tests.infra.conftest import Synthesized
from tests.infra.templates import Template, container, environment, only, resources


def flag(command: list[str], name: str) -> int:
    """The value of a gunicorn option in the container's command."""
    return int(command[command.index(name) + 1])


def alb_attribute(template: Template, key: str) -> str:
    """One load balancer attribute as synthesized."""
    attributes = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")["LoadBalancerAttributes"]
    return next(a["Value"] for a in attributes if a["Key"] == key)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_each_layer_in_front_of_search_waits_longer_than_the_one_it_calls(stage: str, request) -> None:
    # Given a stage served through CloudFront, the ALB and gunicorn
    synthesized: Synthesized = request.getfixturevalue(stage)
    template = synthesized.template_json(synthesized.stacks.frontend)
    command = container(template, "web")["Command"]
    distribution = only(template, "AWS::CloudFront::Distribution")["DistributionConfig"]
    origin_read = distribution["Origins"][0]["VpcOriginConfig"]["OriginReadTimeout"]
    alb_idle = int(alb_attribute(template, "idle_timeout.timeout_seconds"))
    # Then a search's provider attempts fit its budget, and CloudFront gives up only well after the budget
    attempts = SEARCH_BUDGET.attempt_seconds * (1 + SEARCH_BUDGET.retries)
    assert attempts <= SEARCH_BUDGET.total_seconds
    assert origin_read >= 2 * SEARCH_BUDGET.total_seconds
    # (a rerank call after the ranking included: a reranked search answers well before CloudFront gives up)
    assert origin_read >= 2 * (SEARCH_BUDGET.total_seconds + RERANK_TIMEOUT_SECONDS)
    # And the ALB waits longer than CloudFront, gunicorn keeps connections longer than the ALB, and its
    # worker timeout is longer still: the innermost layer always answers (or gives up) first
    assert origin_read < alb_idle < flag(command, "--keep-alive") < flag(command, "--timeout")


def test_without_cloudfront_the_alb_still_waits_longer_than_the_budget(variant: Synthesized) -> None:
    # Given the custom-domain stage (the ALB is the viewer's first hop)
    template = variant.template_json(variant.stacks.frontend)
    command = container(template, "web")["Command"]
    alb_idle = int(alb_attribute(template, "idle_timeout.timeout_seconds"))
    # Then the ALB gives a search time for its budget and lexical answer, and gunicorn outlasts the ALB
    assert resources(template, "AWS::CloudFront::Distribution") == {}
    assert 2 * SEARCH_BUDGET.total_seconds <= alb_idle < flag(command, "--keep-alive")


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_a_thread_is_always_free_and_the_query_caches_fit_the_task(stage: str, request) -> None:
    # Given the web task as synthesized
    synthesized: Synthesized = request.getfixturevalue(stage)
    template = synthesized.template_json(synthesized.stacks.frontend)
    web = container(template, "web")
    settings = Settings(
        **{
            k.removeprefix("REFARCH_").lower(): v
            for k, v in environment(web).items()
            if k in {"REFARCH_QUERY_CACHE_BYTES", "REFARCH_SEARCH_SEMANTIC_SLOTS"}
        }
    )
    task_memory = int(only(template, "AWS::ECS::TaskDefinition")["Memory"]) * 2**20
    # Then each worker has more threads than searches that may wait on a provider (one left for lexical
    # answers), and health checks a lane of their own
    assert flag(web["Command"], "--workers") == WEB_WORKERS
    assert web["Command"][web["Command"].index("--worker-class") + 1] == "web.health_lane.HealthLaneWorker"
    assert settings.search_semantic_slots == SEMANTIC_SEARCH_SLOTS < flag(web["Command"], "--threads")
    # And every worker's query cache together takes a small share of the task's memory
    assert 0 < settings.query_cache_bytes * WEB_WORKERS <= 0.15 * task_memory
