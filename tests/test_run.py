"""run.py: the port is taken before anything else happens."""

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def run_agent(tmp_path, *args):
    env = {
        **os.environ,
        "AOI_DATABASE_URL": f"sqlite:///{tmp_path}/agent.sqlite3",
        "AOI_STORAGE_ROOT": str(tmp_path / "data"),
        # Nothing listens here: a model call would fail, a resumed batch would show it.
        "AOI_MODEL_SERVICE_URL": "http://127.0.0.1:9",
    }
    env.pop("AOI_TEST_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_port_in_use_stops_the_agent_before_it_touches_anything(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = run_agent(tmp_path, "--port", str(port))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port}" in lines[0] and "--port" in lines[0] and "AOI_PORT" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    # No database was created or migrated, so no unfinished batch could be resumed.
    assert not (tmp_path / "agent.sqlite3").exists()
    assert not (tmp_path / "data").exists()


def test_a_port_given_by_aoi_port_is_named_too(tmp_path, monkeypatch):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        monkeypatch.setenv("AOI_PORT", str(port))
        result = run_agent(tmp_path)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr
