"""A WAF web ACL in front of the site: a per-address rate-based rule and AWS's common rule set.

The app limits every costly endpoint itself (web/rate_limits.py, counted in Postgres); the web ACL
stops a flood before it reaches the tasks and the database at all, and the common rule set drops
the usual exploit probes (bad bots, path traversal, SSRF-shaped query strings). Scope CLOUDFRONT
lives in us-east-1 (cdk_app/edge_stack.py); scope REGIONAL is associated with a public ALB.
"""

from __future__ import annotations

from typing import Literal

from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

# AWS's baseline managed rule group (free of subscription; billed as one rule of the web ACL).
COMMON_RULE_SET = "AWSManagedRulesCommonRuleSet"
# The common rule set blocks bodies over 8 KB; a product description may hold 100,000 characters and
# the app caps bodies itself (MAX_CONTENT_LENGTH), so this rule only counts.
COUNTED_COMMON_RULES = ("SizeRestrictions_BODY",)
# The window the rate-based rule counts requests per address over (seconds; WAF allows 60 to 600).
RATE_WINDOW_SECONDS = 300


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True
    )


class SiteWebAcl(Construct):
    """The web ACL; `arn` is what a CloudFront distribution's web_acl_id or an ALB association takes."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        waf_scope: Literal["CLOUDFRONT", "REGIONAL"],
        requests_per_window: int,
    ) -> None:
        super().__init__(scope, id_)
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=name,
            scope=waf_scope,
            description="refarch: per-address rate limit and AWS common rule set in front of the search site",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(name),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="RatePerAddress",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            limit=requests_per_window,
                            aggregate_key_type="IP",
                            evaluation_window_sec=RATE_WINDOW_SECONDS,
                        )
                    ),
                    visibility_config=_visibility(f"{name}-rate"),
                ),
                wafv2.CfnWebACL.RuleProperty(
                    name=COMMON_RULE_SET,
                    priority=1,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS",
                            name=COMMON_RULE_SET,
                            rule_action_overrides=[
                                wafv2.CfnWebACL.RuleActionOverrideProperty(
                                    name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                                )
                                for rule in COUNTED_COMMON_RULES
                            ],
                        )
                    ),
                    visibility_config=_visibility(f"{name}-common"),
                ),
            ],
        )
        self.arn = self.web_acl.attr_arn
