"""A WAF web ACL fronts the site in every stage: on the CloudFront distribution (from a us-east-1 stack,
as AWS requires) or, with a custom domain, on the public ALB; each with a per-address rate-based rule and
AWS's common rule set, named per stage."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from cdk_app.config import DEV, SearchConfig
from cdk_app.constructs.web_acl import COMMON_RULE_SET, COUNTED_COMMON_RULES
from cdk_app.edge_stack import EDGE_REGION
from tests.infra.conftest import Synthesized, synthesize
from tests.infra.templates import Template, only, resources


def web_acl(template: Template) -> tuple[str, dict[str, Any]]:
    """(logical id, properties) of the template's one web ACL."""
    ((logical_id, resource),) = resources(template, "AWS::WAFv2::WebACL").items()
    return logical_id, resource["Properties"]


def assert_site_rules(acl: dict[str, Any], requests_per_window: int) -> None:
    """A blocking per-address rate rule first, then AWS's common rule set with the body-size rule counting only."""
    rate, common = sorted(acl["Rules"], key=lambda rule: rule["Priority"])
    assert rate["Action"] == {"Block": {}}
    statement = rate["Statement"]["RateBasedStatement"]
    assert (statement["Limit"], statement["AggregateKeyType"]) == (requests_per_window, "IP")
    group = common["Statement"]["ManagedRuleGroupStatement"]
    assert (group["VendorName"], group["Name"]) == ("AWS", COMMON_RULE_SET)
    assert common["OverrideAction"] == {"None": {}}
    # A 100,000-character description is a legitimate body: the rule set's 8 KB body limit only counts
    assert {o["Name"]: o["ActionToUse"] for o in group["RuleActionOverrides"]} == {
        name: {"Count": {}} for name in COUNTED_COMMON_RULES
    }
    assert acl["DefaultAction"] == {"Allow": {}}


def test_the_cloudfront_distribution_uses_the_edge_stacks_web_acl(dev: Synthesized) -> None:
    # Given the dev stage (CloudFront in front)
    edge = dev.stacks.edge
    assert edge is not None and edge.region == EDGE_REGION
    logical_id, acl = web_acl(dev.template_json(edge))
    # Then the edge stack holds a CLOUDFRONT-scoped web ACL named for the stage, with the site's rules
    assert acl["Scope"] == "CLOUDFRONT" and acl["Name"] == f"{dev.config.stack_prefix}-cloudfront"
    assert_site_rules(acl, dev.config.waf_requests_per_5_minutes)
    # And the distribution is attached to that ACL (an import of the edge stack's ARN: same region here)
    distribution = only(dev.template_json(dev.stacks.frontend), "AWS::CloudFront::Distribution")
    imported = distribution["DistributionConfig"]["WebACLId"]["Fn::ImportValue"]
    exported = [
        output["Export"]["Name"]
        for output in dev.template_json(edge)["Outputs"].values()
        if output["Value"] == {"Fn::GetAtt": [logical_id, "Arn"]}
    ]
    assert exported == [imported]
    # And nothing regional is left on the internal ALB
    assert not resources(dev.template_json(dev.stacks.frontend), "AWS::WAFv2::WebACL")


def test_a_stage_outside_us_east_1_passes_the_acl_across_regions(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Given a stage in eu-west-1 (where Pinecone serverless also runs), synthesized with cdk-nag
    stage = synthesize(
        replace(DEV, name="eu", region="eu-west-1", search=SearchConfig()), tmp_path_factory.mktemp("cdk-eu")
    )
    assert stage.stacks.edge is not None
    # Then the web ACL is still created in us-east-1, and the frontend (in eu-west-1) reads its ARN across regions
    assert (stage.stacks.edge.region, stage.stacks.frontend.region) == (EDGE_REGION, "eu-west-1")
    assert web_acl(stage.template_json(stage.stacks.edge))[1]["Scope"] == "CLOUDFRONT"
    frontend = stage.template_json(stage.stacks.frontend)
    web_acl_id = only(frontend, "AWS::CloudFront::Distribution")["DistributionConfig"]["WebACLId"]
    reader = web_acl_id["Fn::GetAtt"][0]
    assert frontend["Resources"][reader]["Type"] == "Custom::CrossRegionExportReader"


def test_a_public_alb_gets_a_regional_web_acl_of_its_own(variant: Synthesized) -> None:
    # Given the custom-domain stage (a public ALB, no CloudFront)
    assert variant.stacks.edge is None
    template = variant.template_json(variant.stacks.frontend)
    logical_id, acl = web_acl(template)
    # Then a REGIONAL web ACL with the same rules is associated with the load balancer
    assert acl["Scope"] == "REGIONAL" and acl["Name"] == f"{variant.config.stack_prefix}-alb"
    assert_site_rules(acl, variant.config.waf_requests_per_5_minutes)
    association = only(template, "AWS::WAFv2::WebACLAssociation")
    assert association["WebACLArn"] == {"Fn::GetAtt": [logical_id, "Arn"]}
    (alb,) = resources(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert association["ResourceArn"] == {"Ref": alb}
