"""Edge: the CloudFront distribution's WAF web ACL, which AWS requires in us-east-1 whatever the stage's region."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from cdk_app.config import StageConfig
from cdk_app.constructs.web_acl import SiteWebAcl

# CloudFront reads its web ACL (and certificates) from this region only.
EDGE_REGION = "us-east-1"


class EdgeStack(Stack):
    """The web ACL the frontend's distribution uses (a cross-region reference when the stage is elsewhere)."""

    def __init__(self, scope: Construct, id_: str, *, config: StageConfig, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        self.web_acl = SiteWebAcl(
            self,
            "SiteWebAcl",
            name=f"{config.stack_prefix}-cloudfront",
            waf_scope="CLOUDFRONT",
            requests_per_window=config.waf_requests_per_5_minutes,
        )
