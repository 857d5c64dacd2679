"""The runtime directory refuses what another user or a device planted, and never follows it.

Each test plants what an attacker would (as root here, standing in for the other
user: the integration test does it as a real unprivileged user) and checks both
the refusal and that the target is untouched. Tests that need to make a path
owned by another uid need root.
"""

from __future__ import annotations

import os
import resource
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.config import rundir
from backend.config.exceptions import RuntimeDirError

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make paths another uid owns")
OTHER_UID = 12345
DEVICE_UID = 10001 if os.geteuid() == 0 else os.getuid()
DEVICE = "dev-1"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def ready(root: Path) -> Path:
    """A root with device DEVICE's directory made."""
    rundir.ensure_root(root)
    rundir.make_device_dir(root, DEVICE, DEVICE_UID)
    return root


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A directory of ours elsewhere (0750, one file), what an attacker wants changed."""
    path = tmp_path / "victim"
    path.mkdir()
    (path / "data").write_bytes(b"precious")
    path.chmod(0o750)
    (path / "data").chmod(0o640)
    return path


def _assert_untouched(victim: Path) -> None:
    info = victim.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o750, os.geteuid())
    assert sorted(p.name for p in victim.iterdir()) == ["data"]
    data = (victim / "data").stat()
    assert (stat.S_IMODE(data.st_mode), data.st_uid) == (0o640, os.geteuid())
    assert (victim / "data").read_bytes() == b"precious"


def _mode_owner(path: Path) -> tuple[int, int]:
    info = path.lstat()
    return stat.S_IMODE(info.st_mode), info.st_uid


# --- the root -------------------------------------------------------------------


def test_ensure_root_makes_root_and_devices_private(root: Path) -> None:
    rundir.ensure_root(root)
    rundir.ensure_root(root)  # and accepts its own work again
    assert _mode_owner(root) == (0o700, os.geteuid())
    assert _mode_owner(root / "devices") == (0o700, os.geteuid())


def test_symlinked_root_is_refused_and_its_target_untouched(root: Path, victim: Path) -> None:
    root.symlink_to(victim)
    with pytest.raises(RuntimeDirError, match=rf"{root} is not a directory .*rm -rf {root}"):
        rundir.ensure_root(root)
    with pytest.raises(RuntimeDirError, match="not a directory"):
        rundir.make_device_dir(root, DEVICE, DEVICE_UID)
    _assert_untouched(victim)


def test_a_file_at_the_root_is_refused(root: Path) -> None:
    root.write_bytes(b"")
    with pytest.raises(RuntimeDirError, match="not a directory"):
        rundir.ensure_root(root)


@ROOT_ONLY
def test_root_owned_by_another_uid_is_refused(root: Path) -> None:
    root.mkdir(mode=0o700)
    os.chown(root, OTHER_UID, OTHER_UID)
    with pytest.raises(RuntimeDirError) as caught:
        rundir.ensure_root(root)
    assert str(caught.value) == (
        f"runtime directory {root} belongs to uid {OTHER_UID}, not to you (uid 0); "
        f"remove it (rm -rf {root}) or point CORRAL_RUNTIME_DIR at a directory of your own"
    )
    assert os.listdir(root) == []


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702, 0o1777])
def test_group_or_other_writable_root_is_refused(root: Path, mode: int) -> None:
    root.mkdir()
    root.chmod(mode)
    with pytest.raises(RuntimeDirError, match=f"writable by other users \\(mode {mode:o}\\)"):
        rundir.ensure_root(root)
    assert os.listdir(root) == []
    assert _mode_owner(root) == (mode, os.geteuid())


@pytest.mark.parametrize("path", ["/", "/tmp/..", "/tmp/x/.."])
def test_root_must_end_with_a_name(path: str) -> None:
    with pytest.raises(RuntimeDirError, match=f"runtime directory {path} must end with a directory's name"):
        rundir.ensure_root(Path(path))


def test_missing_parent_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeDirError, match=f"cannot reach the runtime directory .*{tmp_path}/no"):
        rundir.ensure_root(tmp_path / "no" / "run")


# --- the way to the root --------------------------------------------------------


def test_an_ancestor_writable_by_others_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # not sticky: anyone could rename our root away and put theirs
    with pytest.raises(RuntimeDirError, match=f"{shared} \\(on the way to .*mode 777"):
        rundir.ensure_root(shared / "run")
    assert os.listdir(shared) == []


@ROOT_ONLY
def test_an_ancestor_owned_by_another_uid_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    with pytest.raises(RuntimeDirError, match=f"{theirs} \\(on the way to .*owner uid {OTHER_UID}"):
        rundir.ensure_root(theirs / "run")
    assert os.listdir(theirs) == []


def test_a_sticky_world_writable_ancestor_is_fine(tmp_path: Path) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)  # as /tmp
    rundir.ensure_root(sticky / "run")
    assert _mode_owner(sticky / "run") == (0o700, os.geteuid())


def test_our_symlink_on_the_way_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to("real")  # as /var/run -> /run
    rundir.ensure_root(tmp_path / "alias" / "run")
    assert _mode_owner(tmp_path / "real" / "run" / "devices") == (0o700, os.geteuid())
    (tmp_path / "absolute").symlink_to(tmp_path / "real")
    rundir.make_device_dir(tmp_path / "absolute" / "run", DEVICE, DEVICE_UID)
    assert _mode_owner(tmp_path / "real" / "run" / "devices" / DEVICE) == (0o700, DEVICE_UID)


def test_dot_dot_through_a_symlink_goes_where_the_kernel_goes(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a" / "b")
    rundir.ensure_root(tmp_path / "link" / "run")
    rundir.ensure_root(tmp_path / "link" / "run")
    assert (tmp_path / "a" / "b" / "run").is_dir()
    (tmp_path / "up").symlink_to("a/b/..")
    rundir.ensure_root(tmp_path / "up" / "other")
    assert (tmp_path / "a" / "other" / "devices").is_dir()
    # link/.. is the link's target's parent, not the link's directory
    rundir.ensure_root(tmp_path / "link" / ".." / "third")
    assert (tmp_path / "a" / "third" / "devices").is_dir()
    assert not (tmp_path / "third").exists()


@ROOT_ONLY
def test_a_symlink_planted_by_another_uid_in_a_sticky_ancestor_is_refused(
    tmp_path: Path, victim: Path
) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "corral").symlink_to(victim)
    os.chown(sticky / "corral", OTHER_UID, OTHER_UID, follow_symlinks=False)
    with pytest.raises(RuntimeDirError, match=f"{sticky}/corral \\(on the way .*made by uid {OTHER_UID}"):
        rundir.ensure_root(sticky / "corral" / "run")
    _assert_untouched(victim)


def test_a_symlink_loop_on_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(RuntimeDirError, match="too many symlinks on the way"):
        rundir.ensure_root(tmp_path / "loop" / "run")


# --- devices/ and device directories ---------------------------------------------


def test_symlink_at_devices_is_refused_and_its_target_untouched(root: Path, victim: Path) -> None:
    root.mkdir(mode=0o700)
    (root / "devices").symlink_to(victim)
    with pytest.raises(RuntimeDirError, match=f"{root}/devices is not a directory"):
        rundir.ensure_root(root)
    with pytest.raises(RuntimeDirError, match="not a directory"):
        rundir.make_device_dir(root, DEVICE, DEVICE_UID)
    _assert_untouched(victim)


def test_writable_devices_is_refused(root: Path) -> None:
    rundir.ensure_root(root)
    (root / "devices").chmod(0o777)
    with pytest.raises(RuntimeDirError, match=f"{root}/devices is writable by other users"):
        rundir.make_device_dir(root, DEVICE, DEVICE_UID)
    assert os.listdir(root / "devices") == []


def test_make_device_dir_makes_or_repairs_a_private_dir(root: Path) -> None:
    rundir.make_device_dir(root, DEVICE, DEVICE_UID)  # makes the root too
    assert _mode_owner(root) == (0o700, os.geteuid())
    assert _mode_owner(root / "devices" / DEVICE) == (0o700, DEVICE_UID)
    (root / "devices" / DEVICE).chmod(0o755)
    rundir.make_device_dir(root, DEVICE, DEVICE_UID)
    assert _mode_owner(root / "devices" / DEVICE) == (0o700, DEVICE_UID)


def test_symlink_at_a_device_dir_is_refused_and_its_target_untouched(root: Path, victim: Path) -> None:
    rundir.ensure_root(root)
    (root / "devices" / DEVICE).symlink_to(victim)
    with pytest.raises(RuntimeDirError, match=f"{root}/devices/{DEVICE} is not a directory"):
        rundir.make_device_dir(root, DEVICE, DEVICE_UID)
    with pytest.raises(RuntimeDirError, match="not a directory"), rundir.open_device_dir(root, DEVICE):
        pass
    with pytest.raises(RuntimeDirError, match="not a directory"):
        rundir.write_private_file(root, DEVICE, "token", b"x", DEVICE_UID)
    with pytest.raises(RuntimeDirError, match="not a directory"):
        rundir.bind_private_socket(root, DEVICE, "hub.sock", DEVICE_UID)
    with pytest.raises(RuntimeDirError, match="not a directory"):
        rundir.remove_device_dir(root, DEVICE)
    _assert_untouched(victim)
    assert (root / "devices" / DEVICE).is_symlink()


def test_open_device_dir_of_a_missing_device_is_refused(ready: Path) -> None:
    with (
        pytest.raises(RuntimeDirError, match=r"cannot open .*dev-2: No such file"),
        rundir.open_device_dir(ready, "dev-2"),
    ):
        pass


@pytest.mark.parametrize(
    "device_id", ["", ".", "..", "../x", "a/b", "/etc", "x\0y", ".hidden", "-rf", "x" * 65, "é"]
)
def test_invalid_device_ids_are_refused_everywhere(ready: Path, device_id: str) -> None:
    calls = [
        lambda: rundir.make_device_dir(ready, device_id, DEVICE_UID),
        lambda: rundir.remove_device_dir(ready, device_id),
        lambda: rundir.write_private_file(ready, device_id, "token", b"x", DEVICE_UID),
        lambda: rundir.bind_private_socket(ready, device_id, "hub.sock", DEVICE_UID),
        lambda: rundir.connect_socket(ready, device_id, "hub.sock"),
    ]
    for call in calls:
        with pytest.raises(RuntimeDirError, match="invalid device id"):
            call()
    with pytest.raises(RuntimeDirError, match="invalid device id"), rundir.open_device_dir(ready, device_id):
        pass
    assert os.listdir(ready / "devices") == [DEVICE]


@pytest.mark.parametrize("name", ["", "..", "a/b", ".hub.sock.0123", "../devices"])
def test_invalid_file_names_are_refused(ready: Path, name: str) -> None:
    with pytest.raises(RuntimeDirError, match="invalid file name"):
        rundir.write_private_file(ready, DEVICE, name, b"x", DEVICE_UID)
    with pytest.raises(RuntimeDirError, match="invalid socket name"):
        rundir.bind_private_socket(ready, DEVICE, name, DEVICE_UID)
    with pytest.raises(RuntimeDirError, match="invalid socket name"):
        rundir.connect_socket(ready, DEVICE, name)


# --- removal -----------------------------------------------------------------------


def test_remove_device_dir_removes_links_not_their_targets(ready: Path, victim: Path) -> None:
    device = ready / "devices" / DEVICE
    (device / "escape").symlink_to(victim)
    (device / "file").symlink_to(victim / "data")
    (device / "sub").mkdir()
    (device / "sub" / "deep").symlink_to(victim)
    rundir.remove_device_dir(ready, DEVICE)
    assert os.listdir(ready / "devices") == []
    _assert_untouched(victim)


def _nest(top: Path, depth: int) -> None:
    """*depth* directories, one in the other, under *top* (by descriptor: the path would be too long)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.symlink("/", "root", dir_fd=fd)
    finally:
        os.close(fd)


@pytest.fixture
def few_descriptors() -> Iterator[int]:
    """The process may open only 40 more descriptors while the test runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = max(int(name) for name in os.listdir("/proc/self/fd")) + 40
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_remove_device_dir_removes_any_depth_with_few_descriptors(
    ready: Path, victim: Path, few_descriptors: int
) -> None:
    """3,000 nested directories made shutil.rmtree raise RecursionError: the device could not be removed."""
    device = ready / "devices" / DEVICE
    _nest(device, 3000)
    (device / "wide").mkdir()
    for index in range(500):
        (device / "wide" / str(index)).mkdir()
        (device / "wide" / str(index) / "escape").symlink_to(victim)
    try:
        rundir.remove_device_dir(ready, DEVICE)
    finally:
        # What is left would break pytest's own clean-up of tmp_path (shutil.rmtree).
        subprocess.run(["rm", "-rf", "--one-file-system", str(device)], check=True)
    assert os.listdir(ready / "devices") == []
    _assert_untouched(victim)


def test_remove_device_entry_removes_what_the_device_put_at_a_name(ready: Path, victim: Path) -> None:
    device = ready / "devices" / DEVICE
    (device / "agent.cred").mkdir()
    _nest(device / "agent.cred", 100)
    (device / "hub.sock").symlink_to(victim)
    (device / "vnc.sock").write_bytes(b"kept")
    rundir.remove_device_entry(ready, DEVICE, "agent.cred")
    rundir.remove_device_entry(ready, DEVICE, "hub.sock")
    rundir.remove_device_entry(ready, DEVICE, "missing")
    rundir.remove_device_entry(ready, "dev-2", "hub.sock")  # no such device: nothing to do
    assert os.listdir(device) == ["vnc.sock"]
    _assert_untouched(victim)


def test_remove_device_dir_of_nothing_is_fine(root: Path, ready: Path) -> None:
    rundir.remove_device_dir(ready, "dev-2")  # no such device
    rundir.remove_device_dir(root.parent / "no-root", DEVICE)  # no runtime dir at all
    assert os.listdir(ready / "devices") == [DEVICE]


# --- private files ------------------------------------------------------------------


def test_write_private_file_is_0600_and_owned_by_the_device(ready: Path) -> None:
    data = os.urandom(3 << 20)  # larger than one write() may take
    rundir.write_private_file(ready, DEVICE, "credential", data, DEVICE_UID)
    path = ready / "devices" / DEVICE / "credential"
    assert _mode_owner(path) == (0o600, DEVICE_UID)
    assert path.read_bytes() == data
    rundir.write_private_file(ready, DEVICE, "credential", b"rotated", DEVICE_UID)
    assert path.read_bytes() == b"rotated"
    assert os.listdir(path.parent) == ["credential"]


def test_a_symlink_planted_at_a_file_name_is_replaced_not_followed(ready: Path, victim: Path) -> None:
    path = ready / "devices" / DEVICE / "credential"
    path.symlink_to(victim / "data")
    rundir.write_private_file(ready, DEVICE, "credential", b"secret", DEVICE_UID)
    assert not path.is_symlink()
    assert path.read_bytes() == b"secret"
    _assert_untouched(victim)


def test_a_directory_tree_at_a_file_name_is_replaced(ready: Path, victim: Path) -> None:
    """A device that made a directory at our file's name once kept the host from starting."""
    planted = ready / "devices" / DEVICE / "credential"
    (planted / "x" / "y").mkdir(parents=True)
    (planted / "x" / "escape").symlink_to(victim)
    rundir.write_private_file(ready, DEVICE, "credential", b"secret", DEVICE_UID)
    assert planted.read_bytes() == b"secret"
    assert _mode_owner(planted) == (0o600, DEVICE_UID)
    assert os.listdir(ready / "devices" / DEVICE) == ["credential"]
    _assert_untouched(victim)


# --- sockets --------------------------------------------------------------------------


def _bind(root: Path, name: str = "hub.sock") -> socket.socket:
    sock = rundir.bind_private_socket(root, DEVICE, name, DEVICE_UID)
    sock.setblocking(True)
    return sock


def _round_trip(root: Path, server: socket.socket, name: str = "hub.sock") -> None:
    with rundir.connect_socket(root, DEVICE, name, timeout=5) as client:
        accepted, _ = server.accept()
        with accepted:
            client.sendall(b"ping")
            assert accepted.recv(4) == b"ping"


def test_bind_private_socket_makes_a_0600_socket_owned_by_the_device(ready: Path) -> None:
    with _bind(ready) as server:
        path = ready / "devices" / DEVICE / "hub.sock"
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert _mode_owner(path) == (0o600, DEVICE_UID)
        _round_trip(ready, server)
    assert os.listdir(ready / "devices") == [DEVICE]  # nothing staged is left


@pytest.mark.parametrize("planted", ["symlink", "fifo", "file", "stale socket"])
def test_whatever_is_planted_at_a_socket_name_is_replaced_not_followed(
    ready: Path, victim: Path, planted: str
) -> None:
    path = ready / "devices" / DEVICE / "hub.sock"
    if planted == "symlink":
        path.symlink_to(victim / "data")
    elif planted == "fifo":
        os.mkfifo(path)
    elif planted == "file":
        path.write_bytes(b"junk")
    else:
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(str(path))
    with _bind(ready) as server:
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert _mode_owner(path) == (0o600, DEVICE_UID)
        _round_trip(ready, server)
    _assert_untouched(victim)


def test_a_directory_tree_at_a_socket_name_is_replaced(ready: Path, victim: Path) -> None:
    planted = ready / "devices" / DEVICE / "hub.sock"
    (planted / "x").mkdir(parents=True)
    (planted / "x" / "data").symlink_to(victim / "data")
    with _bind(ready) as server:
        assert stat.S_ISSOCK(planted.lstat().st_mode)
        assert _mode_owner(planted) == (0o600, DEVICE_UID)
        _round_trip(ready, server)
    assert os.listdir(ready / "devices") == [DEVICE]
    assert os.listdir(ready / "devices" / DEVICE) == ["hub.sock"]
    _assert_untouched(victim)


def test_a_symlink_swapped_in_while_the_socket_is_made_is_never_followed(
    ready: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The device plants a symlink at the name between bind and chown: the window the
    socket's mode and owner were once set in. They are now set where the device
    cannot reach (devices/), and the rename replaces its symlink."""
    path = ready / "devices" / DEVICE / "hub.sock"
    real_chown = os.chown
    planted: list[str] = []

    def chown_after_a_plant(*args: object, **kwargs: object) -> None:
        path.symlink_to(victim / "data")
        planted.append(str(args[0]))
        real_chown(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rundir.os, "chown", chown_after_a_plant)
    server = _bind(ready)
    monkeypatch.undo()
    with server:
        assert len(planted) == 1
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert _mode_owner(path) == (0o600, DEVICE_UID)
        _round_trip(ready, server)
    _assert_untouched(victim)


def test_a_socket_path_longer_than_108_bytes_works(tmp_path: Path) -> None:
    root = tmp_path / ("a" * 60) / ("b" * 60) / "run"
    root.parent.mkdir(parents=True)
    rundir.make_device_dir(root, DEVICE, DEVICE_UID)
    assert len(str(root / "devices" / DEVICE / "hub.sock").encode()) > 108
    with _bind(root) as server:
        _round_trip(root, server)


def test_connect_socket_refuses_a_symlink_to_a_listening_socket(ready: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(elsewhere))
        listener.listen(1)
        listener.setblocking(False)
        (ready / "devices" / DEVICE / "vnc.sock").symlink_to(elsewhere)
        with pytest.raises(RuntimeDirError, match=r"vnc.sock of device dev-1 is not a socket; refused"):
            rundir.connect_socket(ready, DEVICE, "vnc.sock", timeout=1)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


@pytest.mark.parametrize("planted", ["fifo", "file", "directory"])
def test_connect_socket_refuses_what_is_not_a_socket(ready: Path, planted: str) -> None:
    path = ready / "devices" / DEVICE / "vnc.sock"
    {"fifo": os.mkfifo, "file": lambda p: Path(p).write_bytes(b""), "directory": os.mkdir}[planted](path)
    with pytest.raises(RuntimeDirError, match="is not a socket; refused"):
        rundir.connect_socket(ready, DEVICE, "vnc.sock", timeout=1)


def test_connect_socket_refuses_a_hard_link(ready: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(elsewhere))
        listener.listen(1)
        os.link(elsewhere, ready / "devices" / DEVICE / "vnc.sock")
        with pytest.raises(RuntimeDirError, match=r"not the device's own socket .*2 links"):
            rundir.connect_socket(ready, DEVICE, "vnc.sock", timeout=1)


@ROOT_ONLY
def test_connect_socket_refuses_a_socket_of_another_uid(ready: Path) -> None:
    path = ready / "devices" / DEVICE / "vnc.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen(1)
        os.chown(path, OTHER_UID, OTHER_UID)
        with pytest.raises(RuntimeDirError, match=f"not the device's own socket \\(uid {OTHER_UID}, 1 links"):
            rundir.connect_socket(ready, DEVICE, "vnc.sock", timeout=1)
        os.chown(path, DEVICE_UID, DEVICE_UID)  # as Xvnc in the container makes it
        with rundir.connect_socket(ready, DEVICE, "vnc.sock", timeout=1):
            pass


def test_connect_socket_to_nothing(ready: Path) -> None:
    with pytest.raises(RuntimeDirError, match=r"vnc.sock of device dev-1 does not exist"):
        rundir.connect_socket(ready, DEVICE, "vnc.sock")
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(ready / "devices" / DEVICE / "vnc.sock"))  # bound, never listening
    with pytest.raises(ConnectionRefusedError):
        rundir.connect_socket(ready, DEVICE, "vnc.sock", timeout=1)


def test_connect_socket_at_a_path_refuses_the_same_plants(ready: Path, tmp_path: Path) -> None:
    device = ready / "devices" / DEVICE
    with _bind(ready) as server, rundir.connect_socket_at(device / "hub.sock", timeout=5) as client:
        accepted, _ = server.accept()
        accepted.close()
        assert client.recv(1) == b""
    (device / "vnc.sock").symlink_to(device / "hub.sock")
    with pytest.raises(RuntimeDirError, match=rf"{device}/vnc.sock is not a socket; refused"):
        rundir.connect_socket_at(device / "vnc.sock", timeout=1)
    (ready / "devices" / "dev-2").symlink_to(device)  # a symlinked directory
    with pytest.raises(RuntimeDirError, match="dev-2 is not a directory"):
        rundir.connect_socket_at(ready / "devices" / "dev-2" / "hub.sock", timeout=1)
    with pytest.raises(RuntimeDirError, match=rf"{device}/none.sock does not exist"):
        rundir.connect_socket_at(device / "none.sock", timeout=1)
