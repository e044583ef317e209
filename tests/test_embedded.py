"""Tests of lateinteract_pg.embedded against real PostgreSQL servers (no mocks).

Every test uses its own data directory under ``tmp_path`` and stops its server at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import psutil
import psycopg
import pytest

from lateinteract_pg.embedded import (
    default_data_dir,
    ensure_server,
    server_status,
    stop_server,
)
from lateinteract_pg.errors import ServerError

REPO = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: wait for the go file (so siblings start at the same moment),
# ensure the server, count the rows of table t if asked, print URI, postmaster pid and count.
_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import psycopg
    from lateinteract_pg.embedded import ensure_server, server_status

    data_dir, go, ready, count = sys.argv[1:5]
    Path(ready).touch()
    while go and not Path(go).exists():
        time.sleep(0.001)
    uri = ensure_server(data_dir)
    rows = -1
    if count == "1":
        with psycopg.connect(uri) as conn:
            rows = conn.execute("SELECT count(*) FROM t").fetchone()[0]
    print(uri)
    print(server_status(data_dir)["pid"])
    print(rows)
    """
)


def _spawn(
    data_dir: Path, ready: Path, go: Path | None = None, count: bool = False
) -> subprocess.Popen[str]:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    argv = [sys.executable, "-c", _CHILD, str(data_dir), str(go or ""), str(ready), str(int(count))]
    return subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[str, int, int]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    uri, pid, rows = out.split()
    return uri, int(pid), int(rows)


def _stop(data_dir: Path) -> None:
    """Stop the server of ``data_dir``; kill it if a clean stop fails."""
    try:
        stop_server(data_dir, timeout=30)
    except ServerError:
        status = server_status(data_dir)
        if status is not None:
            os.kill(status["pid"], signal.SIGKILL)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pgdata"
    try:
        yield path
    finally:
        _stop(path)


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


def _kill_postmaster(data_dir: Path) -> int:
    """SIGKILL the postmaster and wait until it is dead (gone or a zombie nobody reaps)."""
    pid = _postmaster_pid(data_dir)
    proc = psutil.Process(pid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    with contextlib.suppress(psutil.NoSuchProcess):
        while proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            assert time.monotonic() < deadline, "postmaster survived SIGKILL"
            time.sleep(0.01)
    return pid


def _count(uri: str) -> int:
    with psycopg.connect(uri) as conn:
        row = conn.execute("SELECT count(*) FROM t").fetchone()
    assert row is not None
    return int(row[0])


def _postmasters_of(data_dir: Path) -> list[int]:
    """Pids of live postgres postmasters whose working directory is ``data_dir``."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            cmdline = proc.info["cmdline"] or []
            if proc.info["status"] == psutil.STATUS_ZOMBIE or not cmdline:
                continue
            if Path(cmdline[0]).name == "postgres" and Path(proc.cwd()) == data_dir:
                found.append(proc.pid)
    return found


def test_start_creates_vector_and_reattaches(data_dir: Path) -> None:
    uri = ensure_server(data_dir)
    assert uri.startswith("postgresql://postgres@/postgres?host=")
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        assert row is not None
        assert tuple(int(p) for p in row[0].split(".")[:2]) >= (0, 7)
        assert conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector").fetchone() == (1.0,)
        server_version = conn.info.server_version
    assert server_version >= 180000
    status = server_status(data_dir)
    assert status is not None and status["accepting"] and status["state"] == "ready"
    pid = status["pid"]

    started = time.monotonic()
    again = ensure_server(data_dir)
    assert time.monotonic() - started < 0.5  # reattached, not restarted
    assert again == uri
    assert _postmaster_pid(data_dir) == pid
    with psycopg.connect(again) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_rows_persist_across_stop_and_start(data_dir: Path) -> None:
    with psycopg.connect(ensure_server(data_dir), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO t VALUES (1, 'kept')")
    assert stop_server(data_dir) is True
    assert server_status(data_dir) is None
    assert not (data_dir / "postmaster.pid").exists()
    assert stop_server(data_dir) is False

    with psycopg.connect(ensure_server(data_dir)) as conn:
        assert conn.execute("SELECT body FROM t WHERE id = 1").fetchone() == ("kept",)


@pytest.mark.parametrize("where", ["same_process", "fresh_subprocess"])
def test_recovers_after_sigkill(data_dir: Path, tmp_path: Path, where: str) -> None:
    uri = ensure_server(data_dir)
    conn = psycopg.connect(uri, autocommit=True)  # left open: its backend outlives the kill
    try:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
        old_pid = _kill_postmaster(data_dir)
        assert (data_dir / "postmaster.pid").exists()  # the stale file the wheels trust
        assert server_status(data_dir) is None

        if where == "same_process":
            new_uri = ensure_server(data_dir)
            rows = _count(new_uri)
        else:
            new_uri, _pid, rows = _finish(_spawn(data_dir, tmp_path / "ready", count=True))
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.close()

    assert rows == 1000
    assert _count(new_uri) == 1000  # the server outlived the process that started it
    new_pid = _postmaster_pid(data_dir)
    assert new_pid != old_pid
    assert _postmasters_of(data_dir) == [new_pid]
    assert "automatic recovery in progress" in (data_dir / "server.log").read_text()


def test_restart_waits_for_a_surviving_backend(data_dir: Path) -> None:
    uri = ensure_server(data_dir)
    conn = psycopg.connect(uri, autocommit=True)
    backend = conn.info.backend_pid
    resume = threading.Timer(1.0, os.kill, (backend, signal.SIGCONT))
    try:
        conn.execute("CREATE TABLE t AS SELECT generate_series(1, 10) AS id")
        os.kill(backend, signal.SIGSTOP)  # keeps the old shared memory attached after the kill
        _kill_postmaster(data_dir)
        resume.start()
        new_uri = ensure_server(data_dir)
    finally:
        resume.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.kill(backend, signal.SIGCONT)
        with contextlib.suppress(psycopg.Error):
            conn.close()
    assert _count(new_uri) == 10
    assert "is still in use" in (data_dir / "server.log").read_text()


def test_stale_pid_reused_by_another_process(data_dir: Path) -> None:
    with psycopg.connect(ensure_server(data_dir), autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT 1 AS id")
    _kill_postmaster(data_dir)
    # The kernel handed the dead postmaster's pid to an unrelated, live process.
    impostor = subprocess.Popen(["sleep", "60"])
    try:
        pidfile = data_dir / "postmaster.pid"
        lines = pidfile.read_text().split("\n")
        pidfile.write_text("\n".join([str(impostor.pid), *lines[1:]]))
        assert server_status(data_dir) is None

        uri = ensure_server(data_dir)
        assert _count(uri) == 1
        assert impostor.poll() is None
        assert _postmaster_pid(data_dir) != impostor.pid
    finally:
        impostor.kill()
        impostor.wait()


def test_concurrent_first_start_makes_one_server(data_dir: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    readies = [tmp_path / "ready0", tmp_path / "ready1"]
    procs = [_spawn(data_dir, ready, go) for ready in readies]
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in readies):
            assert time.monotonic() < deadline, "children did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        go.touch()
        results = [_finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    (uri0, pid0, _), (uri1, pid1, _) = results
    assert uri0 == uri1
    assert pid0 == pid1 == _postmaster_pid(data_dir)
    assert _postmasters_of(data_dir) == [pid0]
    with psycopg.connect(uri0) as conn:  # still running after both processes exited
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_long_data_dir_uses_a_short_socket_dir(tmp_path: Path) -> None:
    path = tmp_path / ("d" * 100) / "pgdata"
    socket_dir = path
    try:
        uri = ensure_server(path)
        status = server_status(path)
        assert status is not None
        socket_dir = Path(status["socket_dir"])
        assert socket_dir != path
        assert (socket_dir / ".s.PGSQL.5432").is_socket()
        assert len(str(socket_dir / ".s.PGSQL.5432")) <= 100
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        _stop(path)
        if socket_dir != path:
            with contextlib.suppress(OSError):
                socket_dir.rmdir()


def test_start_failure_reports_the_server_log(data_dir: Path) -> None:
    ensure_server(data_dir)
    assert stop_server(data_dir)
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write("\nshared_buffers = 'lots'\n")
    with pytest.raises(ServerError, match="invalid value for parameter"):
        ensure_server(data_dir, timeout=20)
    assert server_status(data_dir) is None


def test_default_data_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LATEINTERACT_PG_DATA", str(tmp_path / "custom"))
    assert default_data_dir() == tmp_path / "custom"
    monkeypatch.delenv("LATEINTERACT_PG_DATA")
    expected = Path(platformdirs.user_data_dir("lateinteract_pg")) / "pgdata"
    assert default_data_dir() == expected
