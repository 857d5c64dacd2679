"""A hostile local user prepares Corral's runtime directory; Corral, run as root, refuses it
and the root-owned target of the planted symlink is untouched.

The other users are real: ``nobody`` (65534) and a device uid (10001, no passwd
entry needed), entered with ``setpriv``. The device user reaches its own directory
only through a descriptor handed to it, as a container does through its bind mount.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.config import Settings, rundir
from backend.config.exceptions import RuntimeDirError
from backend.corral import Corral

NOBODY = 65534
DEVICE_UID = 10001
DEVICE = "dev-1"


@pytest.fixture(autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("plays another local user with setpriv: needs root")


def _as_user(uid: int, script: str, *, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    """Run a Python *script* as *uid* (no groups, no capabilities)."""
    return subprocess.Popen(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--",
            sys.executable,
            "-I",
            "-c",
            textwrap.dedent(script),
        ],
        pass_fds=pass_fds,
        stderr=subprocess.PIPE,
    )


def _run_as(uid: int, script: str, *, pass_fds: tuple[int, ...] = ()) -> None:
    process = _as_user(uid, script, pass_fds=pass_fds)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()


@pytest.fixture
def victim() -> Iterator[Path]:
    """A root-owned directory outside the runtime directory: 0755, one 0644 file."""
    path = Path(tempfile.mkdtemp(prefix="crl-victim-", dir="/tmp"))
    (path / "data").write_bytes(b"root's data")
    os.chmod(path / "data", 0o644)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def _assert_untouched(victim: Path) -> None:
    info = victim.lstat()
    assert (stat.S_ISDIR(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (
        True,
        0o755,
        0,
        0,
    )
    assert os.listdir(victim) == ["data"]
    data = (victim / "data").lstat()
    assert (stat.S_IMODE(data.st_mode), data.st_uid, data.st_gid) == (0o644, 0, 0)
    assert (victim / "data").read_bytes() == b"root's data"


@pytest.fixture
def hostile(victim: Path) -> Iterator[Path]:
    """``/tmp/crl-h-…`` made first by nobody, 0777, with devices/dev-1 a symlink to *victim*."""
    path = Path(f"/tmp/crl-h-{secrets.token_hex(4)}")
    try:
        _run_as(
            NOBODY,
            f"""
            import os
            os.mkdir({str(path)!r}); os.chmod({str(path)!r}, 0o777)
            os.mkdir({str(path / "devices")!r}); os.chmod({str(path / "devices")!r}, 0o777)
            os.symlink({str(victim)!r}, {str(path / "devices" / DEVICE)!r})
            """,
        )
        assert (path.stat().st_uid, stat.S_IMODE(path.stat().st_mode)) == (NOBODY, 0o777)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _refusal(path: Path) -> str:
    return (
        f"runtime directory {path} belongs to uid {NOBODY}, not to you (uid 0); "
        f"remove it (rm -rf {path}) or point CORRAL_RUNTIME_DIR at a directory of your own"
    )


def test_making_a_device_dir_in_a_dir_nobody_made_first_is_refused(hostile: Path, victim: Path) -> None:
    with pytest.raises(RuntimeDirError) as caught:
        rundir.make_device_dir(hostile, DEVICE, DEVICE_UID)
    assert str(caught.value) == _refusal(hostile)
    with pytest.raises(RuntimeDirError) as caught:
        rundir.ensure_root(hostile)
    assert str(caught.value) == _refusal(hostile)
    _assert_untouched(victim)
    assert (hostile / "devices" / DEVICE).is_symlink()


async def test_corral_refuses_to_start_on_it(settings: Settings, hostile: Path, victim: Path) -> None:
    with pytest.raises(RuntimeDirError) as caught:
        await Corral.start(settings.model_copy(update={"runtime_dir": hostile}), stream=False)
    assert str(caught.value) == _refusal(hostile)
    _assert_untouched(victim)


def test_a_runtime_dir_that_is_nobodys_symlink_is_refused(victim: Path) -> None:
    path = Path(f"/tmp/crl-h-{secrets.token_hex(4)}")
    _run_as(NOBODY, f"import os; os.symlink({str(victim)!r}, {str(path)!r})")
    try:
        with pytest.raises(RuntimeDirError) as caught:
            rundir.ensure_root(path)
        assert str(caught.value) == (
            f"{path} is not a directory (a symlink or a file); "
            f"remove it (rm -rf {path}) or point CORRAL_RUNTIME_DIR at a directory of your own"
        )
    finally:
        path.unlink()
    _assert_untouched(victim)


def _cli(settings: Settings, hostile: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", command],
        env={
            # as a user runs it: no asyncio debug warnings on stderr
            **{name: value for name, value in os.environ.items() if name != "PYTHONASYNCIODEBUG"},
            "CORRAL_DATABASE_URL": str(settings.database_url),
            "CORRAL_DATA_DIR": str(settings.data_dir),
            "CORRAL_RUNTIME_DIR": str(hostile),
            "CORRAL_DEVICE_NETWORK": "none",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_says_what_to_do_in_one_line(settings: Settings, hostile: Path) -> None:
    result = _cli(settings, hostile, "serve")
    assert (result.returncode, result.stderr) == (1, f"corral: {_refusal(hostile)}\n")


def test_a_read_only_command_never_touches_the_runtime_dir(settings: Settings, hostile: Path) -> None:
    # `corral devices` is a client: it has no business in the runtime directory,
    # so a hostile one neither stops it nor is touched by it.
    before = sorted(os.listdir(hostile))
    result = _cli(settings, hostile, "devices")
    assert (result.returncode, result.stderr) == (0, "")
    assert "no devices" in result.stdout
    assert sorted(os.listdir(hostile)) == before


# --- a device swaps its sockets for symlinks ------------------------------------------


@pytest.fixture
def root() -> Iterator[Path]:
    """A proper runtime directory with dev-1's directory, given to the device uid."""
    base = Path(tempfile.mkdtemp(prefix="crl-", dir="/tmp"))
    try:
        rundir.ensure_root(base / "run")
        rundir.make_device_dir(base / "run", DEVICE, DEVICE_UID)
        yield base / "run"
    finally:
        shutil.rmtree(base)


def _device_fd(root: Path) -> int:
    """The device directory as the container sees it: an open directory, no path above it."""
    return os.open(root / "devices" / DEVICE, os.O_RDONLY | os.O_DIRECTORY)


def test_a_symlink_the_device_put_at_hub_sock_is_replaced_not_followed(root: Path, victim: Path) -> None:
    fd = _device_fd(root)
    try:
        _run_as(
            DEVICE_UID,
            f"import os; os.symlink({str(victim / 'data')!r}, 'hub.sock', dir_fd={fd})",
            pass_fds=(fd,),
        )
    finally:
        os.close(fd)
    assert (root / "devices" / DEVICE / "hub.sock").is_symlink()
    with rundir.bind_private_socket(root, DEVICE, "hub.sock", DEVICE_UID):
        info = (root / "devices" / DEVICE / "hub.sock").lstat()
        assert (stat.S_ISSOCK(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid) == (
            True,
            0o600,
            DEVICE_UID,
        )
    _assert_untouched(victim)


def test_a_device_swapping_hub_sock_while_the_host_binds_never_redirects_it(root: Path, victim: Path) -> None:
    """The device renames a symlink over hub.sock as fast as it can while the host
    binds again and again: every bind ends with our socket, the target never changes."""
    fd = _device_fd(root)
    try:
        swapper = _as_user(
            DEVICE_UID,
            f"""
            import os
            while True:
                try:
                    os.symlink({str(victim / "data")!r}, "planted", dir_fd={fd})
                except FileExistsError:
                    pass
                os.rename("planted", "hub.sock", src_dir_fd={fd}, dst_dir_fd={fd})
            """,
            pass_fds=(fd,),
        )
    finally:
        os.close(fd)
    try:
        path = root / "devices" / DEVICE / "hub.sock"
        deadline = time.monotonic() + 30
        while not path.is_symlink():  # the device is racing us from here on
            assert swapper.poll() is None, swapper.stderr.read() if swapper.stderr else ""
            assert time.monotonic() < deadline, "the device never planted its symlink"
            time.sleep(0.01)
        for _ in range(200):
            with rundir.bind_private_socket(root, DEVICE, "hub.sock", DEVICE_UID):
                pass
            _assert_untouched(victim)
        assert swapper.poll() is None, swapper.stderr.read() if swapper.stderr else ""
    finally:
        swapper.kill()
        swapper.communicate(timeout=10)


@pytest.fixture
def root_socket(victim: Path) -> Iterator[socket.socket]:
    """A socket root listens on, in the victim directory, that anyone may connect to (0666)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(victim / "root.sock"))
    os.chmod(victim / "root.sock", 0o666)
    sock.listen(4)
    sock.setblocking(False)
    yield sock
    sock.close()
    (victim / "root.sock").unlink()


def test_the_host_never_connects_through_a_symlink_the_device_put_at_vnc_sock(
    root: Path, victim: Path, root_socket: socket.socket
) -> None:
    fd = _device_fd(root)
    try:
        script = f"import os; os.symlink({str(victim / 'root.sock')!r}, 'vnc.sock', dir_fd={fd})"
        _run_as(DEVICE_UID, script, pass_fds=(fd,))
    finally:
        os.close(fd)
    with pytest.raises(RuntimeDirError, match=r"vnc.sock of device dev-1 is not a socket; refused"):
        rundir.connect_socket(root, DEVICE, "vnc.sock", timeout=2)
    with pytest.raises(BlockingIOError):
        root_socket.accept()  # no connection reached root's socket
