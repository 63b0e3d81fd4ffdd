"""The one container image (web and Pelican listener), built by CDK from `web/Dockerfile` at deploy time."""

from __future__ import annotations

from typing import Literal

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs

from cdk_app.constructs.lambda_code import PROJECT_ROOT

DOCKERFILE = "web/Dockerfile"

_PLATFORMS = {
    "x86_64": (ecr_assets.Platform.LINUX_AMD64, ecs.CpuArchitecture.X86_64),
    "arm64": (ecr_assets.Platform.LINUX_ARM64, ecs.CpuArchitecture.ARM64),
}


def app_image(architecture: Literal["x86_64", "arm64"]) -> ecs.ContainerImage:
    """The image from the repo root (`.dockerignore` keeps the build context to what the image needs)."""
    platform, _ = _PLATFORMS[architecture]
    return ecs.ContainerImage.from_asset(str(PROJECT_ROOT), file=DOCKERFILE, platform=platform)


def runtime_platform(architecture: Literal["x86_64", "arm64"]) -> ecs.RuntimePlatform:
    """The Fargate platform matching the image's architecture."""
    _, cpu = _PLATFORMS[architecture]
    return ecs.RuntimePlatform(cpu_architecture=cpu, operating_system_family=ecs.OperatingSystemFamily.LINUX)
