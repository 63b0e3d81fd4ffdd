"""`make demo` as a new user runs it: from a fresh directory, with HOME set and nothing exported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.local.test_demo import counts, runtime, wait_for

# The one test that runs `refarch demo` with its default SQS port (9324 when free), as a new user
# does; every other stack in the suite takes a free port, so parallel workers never race for it.
pytestmark = pytest.mark.slow

PROJECT_VARIABLES = ("REFARCH_HOME", "DATABASE_URL", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_DISABLED")


def user_env(home: Path) -> dict[str, str]:
    """The environment of a person's shell: HOME set, no project variable exported."""
    env = {key: value for key, value in os.environ.items() if key not in PROJECT_VARIABLES}
    env["HOME"] = str(home)
    return env


def running(pid: int) -> bool:
    """True while the process exists and is not a zombie (an orphan's zombie is reaped late in a container)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z"


def test_first_run_keeps_home_clean_the_terminal_quiet_and_leaves_no_orphans(tmp_path: Path):
    # Given a fresh working directory and a user whose HOME is elsewhere, with nothing exported
    workdir, user_home = tmp_path / "clone", tmp_path / "user-home"
    workdir.mkdir()
    user_home.mkdir()
    port = free_port()
    stderr_path = tmp_path / "demo.stderr"
    with stderr_path.open("wb") as stderr:
        demo = subprocess.Popen(
            [sys.executable, "-m", "refarch_cli", "demo", "--rows", "30", "--port", str(port)],
            cwd=workdir,
            env=user_env(user_home),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    state = workdir / ".refarch"
    try:
        # When the demo has started everything and indexed the catalog
        dsn = wait_for(lambda: runtime(state).get("database_url"), 120, "the database under ./.refarch")
        wait_for(lambda: counts(dsn)["indexed"] == 30 and counts(dsn)["pending"] == 0, 240, "the bootstrap")
        pids = wait_for(
            lambda: (lambda p: p if "listener" in p else None)(json.loads((state / "processes.json").read_text())),
            60,
            "every component, the listener included",
        )
        # Then its state lives in ./.refarch, as documented, and nothing was written into HOME
        assert (state / "pgdata").is_dir() and (state / "runtime.json").is_file()
        assert list(user_home.iterdir()) == []
        # And the terminal shows sentences and progress, not JSON log lines (those go to the log files)
        lines = stderr_path.read_text(errors="replace").splitlines()
        assert any("catalog: seeded 30 products" in line for line in lines), lines
        assert [line for line in lines if line.lstrip().startswith("{")] == []
        assert (state / "logs" / "demo.log").is_file()

        # When the supervisor dies without cleaning up
        demo.send_signal(signal.SIGKILL)
        demo.wait(10)
        # Then every component it started exits on its own
        wait_for(lambda: not any(running(pid) for pid in pids.values()), 60, f"the components {pids} to exit")
    finally:
        if demo.poll() is None:
            demo.kill()

    # And the next demo starts cleanly on the same port and finds everything synced
    rerun = subprocess.run(
        [sys.executable, "-m", "refarch_cli", "demo", "--rows", "30", "--port", str(port), "--exit-when-synced"]
        + ["--timeout", "180"],
        cwd=workdir,
        env=user_env(user_home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["indexed"] == 30 and summary["failures"] == 0
