"""`python -m refarch_local.architecture_picture [docs/architecture.svg]`: synthesize the dev stage, draw it."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from refarch_local.architecture_picture.synth import draw_stage


def main(argv: list[str]) -> None:
    """Write the picture of the dev stage (what `cdk synth` builds by default) to the path given."""
    out = Path(argv[0] if argv else "docs/architecture.svg")
    with tempfile.TemporaryDirectory(prefix="refarch-picture-") as outdir:
        out.write_text(draw_stage(Path(outdir)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
