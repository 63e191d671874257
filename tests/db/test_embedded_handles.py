"""The embedded PostgreSQL after a command was killed with SIGKILL: pgserver keeps the dead
process on its list of users, so the server never stopped, not even on `healthflow db stop`
(found after `kill -9` of `healthflow run`: the server ran on with its shared memory)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KILLED_WHILE_USING_THE_SERVER = """
import os, signal, sys
from pathlib import Path
from tasks.db.engine import embedded_url
embedded_url(Path(sys.argv[1]))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_db_stop_stops_a_server_whose_last_user_was_killed(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HEALTHFLOW_DATA_DIR": str(tmp_path)}
    env.pop("HEALTHFLOW_DATABASE_URL", None)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_USING_THE_SERVER, str(pgdata)], env=env, check=False
    )
    assert killed.returncode == -9
    assert (pgdata / "postmaster.pid").exists()  # the killed process left it running
    try:
        stop = subprocess.run(
            [sys.executable, "-m", "tasks.cli", "db", "stop"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert stop.returncode == 0, stop.stderr
        assert "stopped the embedded PostgreSQL" in stop.stdout
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        if (pgdata / "postmaster.pid").exists():  # leave no server behind if the fix regresses
            pid = int((pgdata / "postmaster.pid").read_text().split()[0])
            subprocess.run(
                [sys.executable, "-c", f"import os, signal; os.kill({pid}, signal.SIGTERM)"],
                check=False,
            )
