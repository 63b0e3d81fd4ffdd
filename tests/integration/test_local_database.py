"""The embedded Postgres stops with its last user, whatever happened to the users before it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from refarch_local.database import LocalDatabase
from tests.local.test_demo_first_run import running

USE_AND_HANG = (
    "import sys, time; from pathlib import Path; from refarch_local.database import LocalDatabase;"
    "LocalDatabase(Path(sys.argv[1])).start(); print('up', flush=True); time.sleep(600)"
)


def stopped(database: LocalDatabase, postmaster: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if database.postmaster_pid() is None and not running(postmaster):
            return True
        time.sleep(0.1)
    return False


def test_a_server_whose_other_user_was_killed_stops_with_its_last_user(tmp_path: Path):
    # Given a process that started the server and was SIGKILLed, never letting go of it
    user = subprocess.Popen([sys.executable, "-c", USE_AND_HANG, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert user.stdout is not None and user.stdout.readline().strip() == "up"
    finally:
        user.kill()
        user.wait()
    # When another process uses the server, then lets go of it
    database = LocalDatabase(tmp_path)
    database.start()
    postmaster = database.postmaster_pid()
    assert postmaster is not None and running(postmaster)
    database.stop()
    # Then the server stopped: nobody is left to use it
    assert stopped(database, postmaster)


def test_a_restarted_server_stops_with_its_last_user(tmp_path: Path):
    # Given a server restarted in place (a new postmaster, as the chaos harness does)
    database = LocalDatabase(tmp_path)
    database.start()
    before = database.postmaster_pid()
    database.restart()
    postmaster = database.postmaster_pid()
    assert postmaster is not None and postmaster != before and running(postmaster)
    # When its only user lets go, Then it stops
    database.stop()
    assert stopped(database, postmaster)


def test_a_server_still_used_by_another_process_keeps_running(tmp_path: Path):
    # Given a process using the server (it started it), and this one joining it
    user = subprocess.Popen([sys.executable, "-c", USE_AND_HANG, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert user.stdout is not None and user.stdout.readline().strip() == "up"
        database = LocalDatabase(tmp_path)
        database.start()
        postmaster = database.postmaster_pid()
        # When this one lets go, Then the server keeps running for the other
        database.stop()
        time.sleep(1)
        assert postmaster is not None and running(postmaster) and database.postmaster_pid() == postmaster
    finally:
        user.kill()
        user.wait()
    # And the last of them to let go stops it
    last = LocalDatabase(tmp_path)
    last.start()
    last.stop()
    assert postmaster is not None and stopped(last, postmaster)
