"""`refarch rehearse` (make rehearse), small: the whole rehearsal from cdk.out, a JSON summary as its last line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from refarch.db import migration_files
from refarch_local.rehearsal.template import REPO_ROOT
from tests.conftest import SHORT_BATCHING_WINDOW


def test_the_rehearsal_passes_and_prints_its_summary_last(tmp_path: Path) -> None:
    # Given a fresh home (the synthesized app comes from the shared cache)
    env = {**os.environ, **SHORT_BATCHING_WINDOW, "REFARCH_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO_ROOT)}
    # When the rehearsal runs with 100 rows
    done = subprocess.run(
        [sys.executable, "-m", "refarch_cli", "rehearse", "--rows", "100", "--timeout", "600"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    # Then it passes, and its last line is the summary: every step, every execution succeeded
    assert done.stdout.strip(), f"no summary (exit {done.returncode}): {done.stderr[-3000:]}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and summary["ok"], summary
    assert list(summary["steps"]) == ["upgrades", "migrate", "bootstrap", "edit", "reconcile", "reindex"]
    # bootstrap, reconcile, re-index and the bootstrap its Fill started
    assert (summary["executions"], summary["executions_failed"]) == (4, 0)
    assert summary["steps"]["bootstrap"]["enqueued"] == 100
    assert summary["steps"]["reindex"] == {**summary["steps"]["reindex"], "previous": 1, "active": 2}
    # And every migration was upgraded from a populated database, and every AWS call was authorized by its role
    assert summary["migrations_upgraded"] == len(migration_files())
    assert summary["calls_checked"] > 0 and summary["calls_denied"] == 0
