"""The private runtime directory: created race-free, never followed through a symlink.

Layout (every entry made by this module)::

    <runtime_dir>/                 0700, owned by us (refused otherwise)
        devices/                   0700, owned by us
            <device_id>/           0700, owned by the device uid, bind-mounted into the container
                vnc.sock           made by Xvnc inside the container
                hub.sock           made by the host (:func:`bind_private_socket`)

A device directory is writable by its device, which we do not trust: anything in
it may be a symlink planted to make the host (often root) chown, chmod, connect to
or write somewhere else. So every path below the root is reached from a directory
file descriptor opened with ``O_NOFOLLOW``, files are opened ``O_NOFOLLOW``, and
unix sockets are connected through an ``O_PATH`` descriptor of the socket node
itself (``/proc/self/fd/N``), checked to be a socket first.

All functions block (system calls only, no waiting); call them in a thread from
the event loop when many run at once. They raise :class:`RuntimeDirError` with
the path and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from backend.config.exceptions import RuntimeDirError
from backend.config.paths import DEVICES_DIR

__all__ = [
    "bind_private_socket",
    "connect_socket",
    "ensure_root",
    "make_device_dir",
    "open_device_dir",
    "remove_device_dir",
    "write_private_file",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _fix(path: Path) -> str:
    return f"remove it (rm -rf {path}) or point CORRAL_RUNTIME_DIR at a directory of your own"


def _check_ours(fd: int, path: Path) -> None:
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        raise RuntimeDirError(
            f"runtime directory {path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}); "
            + _fix(path)
        )
    if info.st_mode & 0o022:
        raise RuntimeDirError(
            f"runtime directory {path} is writable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            + _fix(path)
        )


def _open_dir(name: str | Path, path: Path, dir_fd: int | None = None) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RuntimeDirError(f"{path} is not a directory (a symlink or a file); " + _fix(path)) from exc
        raise RuntimeDirError(f"cannot open {path}: {exc.strerror}") from exc


def _mkdir_open(name: str | Path, path: Path, mode: int, dir_fd: int | None = None) -> int:
    """Create directory *name* (or find it) and open it without following a symlink."""
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise RuntimeDirError(f"cannot create {path}: {exc.strerror}") from exc
    return _open_dir(name, path, dir_fd)


@contextlib.contextmanager
def _devices_fd(root: Path) -> Iterator[int]:
    """The ``devices`` directory of a checked root, as an open descriptor."""
    root_fd = _open_dir(root, root)
    try:
        _check_ours(root_fd, root)
        path = root / DEVICES_DIR
        fd = _mkdir_open(DEVICES_DIR, path, 0o700, root_fd)
        try:
            _check_ours(fd, path)
            yield fd
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)


def ensure_root(root: Path) -> None:
    """Create *root* (0700) and its ``devices`` folder, or check the ones that exist.

    Refuses a root that is a symlink, is not a directory, is owned by another
    user or is writable by group or others: another local user
    could have made it first to steer what we create inside.
    Its parent must exist (``/run``, ``$XDG_RUNTIME_DIR`` or ``/tmp``).
    """
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise RuntimeDirError(f"cannot create the runtime directory {root}: {exc.strerror}") from exc
    with _devices_fd(root):
        pass


def make_device_dir(root: Path, device_id: str, uid: int) -> None:
    """Create (or repair) the device's directory: 0700, owned by *uid*; never through a symlink."""
    _check_device_id(device_id)
    with _devices_fd(root) as devices:
        path = root / DEVICES_DIR / device_id
        fd = _mkdir_open(device_id, path, 0o700, devices)
        try:
            os.fchown(fd, uid, uid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


@contextlib.contextmanager
def open_device_dir(root: Path, device_id: str) -> Iterator[int]:
    """The device's directory as an open descriptor (raises RuntimeDirError if missing)."""
    _check_device_id(device_id)
    with _devices_fd(root) as devices:
        fd = _open_dir(device_id, root / DEVICES_DIR / device_id, devices)
        try:
            yield fd
        finally:
            os.close(fd)


def remove_device_dir(root: Path, device_id: str) -> None:
    """Remove the device's directory and everything in it; symlinks inside are removed, not followed."""
    _check_device_id(device_id)
    try:
        with _devices_fd(root) as devices:
            shutil.rmtree(device_id, dir_fd=devices)
    except FileNotFoundError:
        pass
    except RuntimeDirError:
        if os.path.lexists(root):
            raise


def write_private_file(root: Path, device_id: str, name: str, data: bytes, uid: int) -> None:
    """Write *data* to the device's file *name* (0600, owned by *uid*), replacing it atomically.

    The file is written under a fresh temporary name (``O_EXCL|O_NOFOLLOW``) and
    renamed over *name*; a symlink planted at *name* is replaced, never followed.
    """
    with open_device_dir(root, device_id) as dir_fd:
        temporary = f".{name}.{secrets.token_hex(6)}"
        fd = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dir_fd,
        )
        try:
            os.fchown(fd, uid, uid)
            os.write(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=dir_fd)
            raise
        os.close(fd)
        os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def bind_private_socket(root: Path, device_id: str, name: str, uid: int) -> socket.socket:
    """A listening unix socket at the device's *name*, 0600 and owned by *uid*.

    Whatever is at *name* (a stale socket, a planted symlink) is removed first.
    The new node's mode and owner are set through an ``O_PATH`` descriptor of the
    node itself, after checking it is a socket, so a symlink swapped in after
    ``bind`` is refused (RuntimeDirError) instead of followed. The caller owns the
    returned socket (non-blocking, ready for ``loop.create_unix_server(sock=…)``).
    """
    with open_device_dir(root, device_id) as dir_fd:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(f"/proc/self/fd/{dir_fd}/{name}")
            node = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                if not stat.S_ISSOCK(os.fstat(node).st_mode):
                    raise RuntimeDirError(f"{name} of device {device_id} was replaced while it was made")
                os.chmod(f"/proc/self/fd/{node}", 0o600)
                os.chown(f"/proc/self/fd/{node}", uid, uid)
            finally:
                os.close(node)
            sock.listen(64)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise RuntimeDirError(f"cannot make {name} for device {device_id}: {exc.strerror}") from exc
        except BaseException:
            sock.close()
            raise
        return sock


def connect_socket(root: Path, device_id: str, name: str, timeout: float | None = None) -> socket.socket:
    """A blocking unix socket connected to the device's *name*, never through a symlink.

    Raises RuntimeDirError when *name* is missing or not a socket (a symlink, a
    file), OSError (ECONNREFUSED, …) when nothing listens.
    """
    with open_device_dir(root, device_id) as dir_fd:
        try:
            node = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError as exc:
            raise RuntimeDirError(f"device {device_id} has no {name}") from exc
        try:
            if not stat.S_ISSOCK(os.fstat(node).st_mode):
                raise RuntimeDirError(f"{name} of device {device_id} is not a socket; refused")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                # The magic link resolves to the node we checked, not to a path
                # the device could have swapped since.
                sock.connect(f"/proc/self/fd/{node}")
            except BaseException:
                sock.close()
                raise
            return sock
        finally:
            os.close(node)


def _check_device_id(device_id: str) -> None:
    if not device_id or "/" in device_id or device_id in (".", "..") or "\0" in device_id:
        raise RuntimeDirError(f"invalid device id {device_id!r}")
