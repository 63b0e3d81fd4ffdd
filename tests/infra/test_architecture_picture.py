"""docs/architecture.svg is drawn from the CDK app: the graph it embeds must be the one a synth gives today."""

from __future__ import annotations

from pathlib import Path

from refarch_local.architecture_picture.graph import ArchitectureGraph, Edge, architecture_graph
from refarch_local.architecture_picture.svg import embedded_graph, render_svg
from refarch_local.architecture_picture.synth import picture_title
from tests.infra.conftest import Synthesized

PICTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.svg"
STALE = "docs/architecture.svg is stale: run `make docs` and commit the picture"


def dev_graph(dev: Synthesized) -> ArchitectureGraph:
    return architecture_graph(dev.stacks.all(), dev.outdir, prefix=dev.config.stack_prefix)


def test_the_picture_shows_the_graph_of_the_current_app(dev: Synthesized):
    # Given the dev stage as `cdk synth` builds it, and the committed picture
    graph = dev_graph(dev)
    picture = PICTURE.read_text()
    # Then the picture was drawn from that graph (nodes and edges compared as text, not pixels) ...
    assert embedded_graph(picture) == graph.describe(), STALE
    # ... by the drawing code of today
    assert picture == render_svg(graph, title=picture_title("dev")), STALE


def test_the_graph_has_both_lanes_and_who_feeds_them(dev: Synthesized):
    graph = dev_graph(dev)
    edges = set(graph.edges)
    # Each lane's queue invokes its own Emu function and dead-letters to its own queue
    assert Edge("Data/Sync/Queue", "Emu/Emu", "invokes", "batch ≤ 10") in edges
    assert any(e.source == "Data/Sync/BulkQueue" and e.target == "Emu/EmuBulk" and e.kind == "invokes" for e in edges)
    assert Edge("Data/Sync/Queue", "Data/Sync/DeadLetterQueue", "dead-letters", "after 5") in edges
    assert Edge("Data/Sync/BulkQueue", "Data/Sync/BulkDeadLetterQueue", "dead-letters", "after 5") in edges
    # Only the listener sends to the live lane; the bulk lane has the bootstrap, the reconcile, Emu bulk too
    senders = {
        queue: {e.source for e in edges if e.kind == "sends" and e.target == queue}
        for queue in ("Data/Sync/Queue", "Data/Sync/BulkQueue")
    }
    # (the web service sends to both: it redrives their dead letters, docs/operations.md)
    assert senders["Data/Sync/Queue"] == {"Pelican/Listener/Service", "Frontend/Web/Service"}
    assert senders["Data/Sync/BulkQueue"] == {
        "Pelican/Listener/Service",
        "Frontend/Web/Service",
        "Pelican/BootstrapBatch",
        "Pelican/ReconcileShard",
        "Emu/EmuBulk",
    }
    # The bootstrap's functions are drawn inside its state machine, in the order it runs them
    steps = sorted((n.step, n.label) for n in graph.nodes.values() if n.parent == "Pelican/Bootstrap")
    assert [label for _, label in steps] == ["Bootstrap plan", "Bootstrap batch", "Bootstrap finalize"]
    # Each runtime connects to Postgres with its own login
    assert Edge("Frontend/Web/Service", "Data/Database", "connects", "refarch_web") in edges
    assert Edge("Emu/Emu", "Data/Database", "connects", "refarch_emu") in edges
