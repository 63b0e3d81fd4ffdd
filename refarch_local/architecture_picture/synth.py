"""Synthesize a stage the way the infra tests do (no asset bundling) and draw its picture."""

from __future__ import annotations

import os
from pathlib import Path

from refarch_local.architecture_picture.graph import ArchitectureGraph, architecture_graph
from refarch_local.architecture_picture.svg import render_svg

# jsii prints a banner about Node's support window on every start; it says nothing about our code.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def stage_graph(outdir: Path, stage: str = "dev") -> ArchitectureGraph:
    """Synthesize `stage` into `outdir` and read its graph."""
    import aws_cdk as cdk

    from cdk_app.config import stage_config
    from cdk_app.system import build_system

    config = stage_config(stage)
    app = cdk.App(outdir=str(outdir), context={"aws:cdk:bundling-stacks": []})
    stacks = build_system(app, config)
    app.synth()
    return architecture_graph(stacks.all(), outdir, prefix=config.stack_prefix)


def picture_title(stage: str = "dev") -> str:
    """The title drawn on the picture."""
    return f"refarch on AWS — the {stage} stage, drawn from `cdk synth`"


def draw_stage(outdir: Path, stage: str = "dev") -> str:
    """The SVG picture of `stage`, synthesized into `outdir`."""
    return render_svg(stage_graph(outdir, stage), title=picture_title(stage))
