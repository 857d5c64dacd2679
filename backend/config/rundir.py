"""The private runtime directory: created race-free, never followed through a symlink.

Layout (every entry made by this module)::

    <runtime_dir>/                 0700, owned by us (refused otherwise)
        devices/                   0700, owned by us
            .<name>.<random>       a socket being made (:func:`bind_private_socket`), for an instant
            <device_id>/           0700, owned by the device uid, bind-mounted into the container
                vnc.sock           made by Xvnc inside the container
                hub.sock           made by the host (:func:`bind_private_socket`)

Another local user may have made the runtime directory first (``/tmp/corral-UID``
is predictable) or may control a directory on the way to it: the root is reached
by walking from ``/`` one component at a time (``openat`` with ``O_NOFOLLOW``),
each directory on the way must belong to root or to us and be writable by no one
else (unless sticky, like ``/tmp``), a symlink on the way is followed only when it
sits in such a directory and belongs to root or to us, and the root itself must
be a real directory owned by us that no one else can write to.

A device directory is writable by its device, which we do not trust: anything in
it may be a symlink, a FIFO or a hard link planted to make the host (often root)
chown, chmod, connect to or write somewhere else. So every path below the root is
reached from a directory file descriptor opened with ``O_NOFOLLOW``; files are
made under a fresh name with ``O_EXCL`` and renamed into place, over whatever
the device put at the name (a directory tree there is removed first: the device
owns that content, and it must not keep the host from writing); sockets are bound,
chmod-ed and chown-ed in ``devices/`` (where only we write) and then renamed into
the device directory; and a device's socket is connected through an ``O_PATH``
descriptor of the node itself (``/proc/self/fd/N``), checked first to be a socket
with one link, owned by the device or by us. Binding and connecting through
``/proc/self/fd`` also lifts the 108-byte limit of unix socket paths.

All functions block (system calls only, no waiting); call them in a thread from
the event loop when many run at once. They raise :class:`RuntimeDirError` with
the path and the fix (``connect_socket`` also lets ``OSError`` of the connection
itself through).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from backend.config.exceptions import RuntimeDirError
from backend.config.paths import DEVICES_DIR
from backend.config.rmtree import remove_at

__all__ = [
    "bind_private_socket",
    "connect_socket",
    "connect_socket_at",
    "ensure_root",
    "make_device_dir",
    "open_device_dir",
    "remove_device_dir",
    "remove_device_entry",
    "write_private_file",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Device ids and file names: one path component, never ``.``/``..`` or hidden (our temporary names)."""
_MAX_SYMLINKS = 40  # as the kernel (MAXSYMLINKS)
_REPLACE_ATTEMPTS = 3
"""Times a rename into place removes what the device put at the name (it may race us)."""


def _fix(path: Path) -> str:
    return f"remove it (rm -rf {path}) or point CORRAL_RUNTIME_DIR at a directory of your own"


def _elsewhere() -> str:
    return "point CORRAL_RUNTIME_DIR at a directory of your own (for example under $XDG_RUNTIME_DIR)"


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


def _trusted(info: os.stat_result) -> bool:
    """True for a directory on the way to the root that no other user can change."""
    if info.st_uid not in (0, os.geteuid()):
        return False
    # A sticky directory (/tmp) may be world-writable: others cannot rename or
    # remove what root or we made in it, and what they made there is refused.
    return not info.st_mode & 0o022 or bool(info.st_mode & stat.S_ISVTX)


def _open_root(root: Path, *, create: bool) -> int:
    """Open *root* (optionally creating it, 0700), checked to be ours; refuses unsafe steps on the way."""
    parent, name = _open_parent(root)
    try:
        if create:
            _mkdir(name, root, parent)
        fd = _open_dir(name, root, parent)
    finally:
        os.close(parent)
    try:
        _check_ours(fd, root)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_parent(root: Path) -> tuple[int, str]:
    """Walk from ``/`` to the directory holding *root*, one ``openat`` at a time.

    Returns it open and *root*'s last name. Each directory entered must be
    :func:`_trusted`; a symlink on the way is followed (by us, not the kernel) only
    when it belongs to root or to us, its directory being trusted already.
    """
    # Not normalised (abspath would drop "link/.." where the kernel follows the
    # link first): ".." is resolved by the walk, as the kernel would.
    target = Path(root).absolute()
    if target.name in ("", ".."):
        raise RuntimeDirError(
            f"the runtime directory {root} must end with a directory's name; " + _elsewhere()
        )
    pending = list(target.parts[1:])  # the last one stays: it is the root itself
    walked: list[str] = []  # the real path of fds[-1], below /
    fds = [os.open("/", _DIR_FLAGS)]
    links = 0
    try:
        while len(pending) > 1:
            name = pending.pop(0)
            here = Path("/", *walked)
            if name == "..":
                if len(fds) > 1:
                    os.close(fds.pop())
                    walked.pop()
                continue
            if name == ".":
                continue
            try:
                info = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
            except OSError as exc:
                raise RuntimeDirError(
                    f"cannot reach the runtime directory {root}: {here / name}: {exc.strerror}"
                ) from exc
            if stat.S_ISLNK(info.st_mode):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise RuntimeDirError(f"too many symlinks on the way to the runtime directory {root}")
                if info.st_uid not in (0, os.geteuid()):
                    raise RuntimeDirError(
                        f"{here / name} (on the way to the runtime directory {root}) is a symlink "
                        f"made by uid {info.st_uid}; " + _elsewhere()
                    )
                link = os.readlink(name, dir_fd=fds[-1])
                if link.startswith("/"):
                    while len(fds) > 1:
                        os.close(fds.pop())
                    walked.clear()
                pending[:0] = [part for part in link.split("/") if part]
                continue
            fds.append(_open_dir(name, here / name, fds[-1]))
            walked.append(name)
            entered = os.fstat(fds[-1])
            if not _trusted(entered):
                raise RuntimeDirError(
                    f"{here / name} (on the way to the runtime directory {root}) can be changed by "
                    f"other users (owner uid {entered.st_uid}, mode {stat.S_IMODE(entered.st_mode):o}); "
                    + _elsewhere()
                )
        parent = fds.pop()
        return parent, pending[0]
    finally:
        for fd in fds:
            os.close(fd)


def _open_dir(name: str | Path, path: Path, dir_fd: int | None = None) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RuntimeDirError(f"{path} is not a directory (a symlink or a file); " + _fix(path)) from exc
        raise RuntimeDirError(f"cannot open {path}: {exc.strerror}") from exc


def _mkdir(name: str, path: Path, dir_fd: int) -> None:
    """Create directory *name* (0700) unless something is already there (checked when opened)."""
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise RuntimeDirError(f"cannot create {path}: {exc.strerror}") from exc


@contextlib.contextmanager
def _devices_fd(root: Path, *, create: bool) -> Iterator[int]:
    """The ``devices`` directory of a checked root, as an open descriptor."""
    root_fd = _open_root(root, create=create)
    try:
        path = root / DEVICES_DIR
        if create:
            _mkdir(DEVICES_DIR, path, root_fd)
        fd = _open_dir(DEVICES_DIR, path, root_fd)
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
    user or is writable by group or others (another local user could have made
    it first to steer what we create inside), and a root reached through a
    directory or symlink another user controls. Its parent must exist
    (``/run``, ``$XDG_RUNTIME_DIR`` or ``/tmp``).
    """
    with _devices_fd(root, create=True):
        pass


def make_device_dir(root: Path, device_id: str, uid: int) -> None:
    """Create (or repair) the device's directory: 0700, owned by *uid*; never through a symlink.

    Makes the root too when it is missing (a /tmp cleaner may have removed it), with
    the checks of :func:`ensure_root`.
    """
    _check_name(device_id, "device id")
    with _devices_fd(root, create=True) as devices:
        path = root / DEVICES_DIR / device_id
        _mkdir(device_id, path, devices)
        fd = _open_dir(device_id, path, devices)
        try:
            os.fchown(fd, uid, uid)
            os.fchmod(fd, 0o700)
        except OSError as exc:
            raise RuntimeDirError(f"cannot give {path} to uid {uid}: {exc.strerror}") from exc
        finally:
            os.close(fd)


@contextlib.contextmanager
def open_device_dir(root: Path, device_id: str) -> Iterator[int]:
    """The device's directory as an open descriptor (raises RuntimeDirError if missing)."""
    with _device_fds(root, device_id) as (_, fd):
        yield fd


@contextlib.contextmanager
def _device_fds(root: Path, device_id: str) -> Iterator[tuple[int, int]]:
    """``devices/`` and the device's directory, as open descriptors."""
    _check_name(device_id, "device id")
    with _devices_fd(root, create=False) as devices:
        fd = _open_dir(device_id, root / DEVICES_DIR / device_id, devices)
        try:
            yield devices, fd
        finally:
            os.close(fd)


def remove_device_dir(root: Path, device_id: str) -> None:
    """Remove the device's directory and everything in it; symlinks inside are removed, not followed.

    Whatever the device made in it goes, at any depth, with a bounded number of
    descriptors (:func:`backend.config.rmtree.remove_at`). Nothing to do when the
    directory (or the whole runtime directory) is gone.
    """
    _check_name(device_id, "device id")
    try:
        with _devices_fd(root, create=False) as devices:
            # Refuses a symlink at the device's name with the usual message
            # (only we write in devices/, so nothing can change it after).
            os.close(_open_dir(device_id, root / DEVICES_DIR / device_id, devices))
            remove_at(devices, device_id)
    except FileNotFoundError:
        pass
    except RuntimeDirError as exc:
        if not isinstance(exc.__cause__, FileNotFoundError):
            raise
    except OSError as exc:
        raise RuntimeDirError(f"cannot remove {root / DEVICES_DIR / device_id}: {exc}") from exc


def remove_device_entry(root: Path, device_id: str, name: str) -> None:
    """Remove whatever is at the device's *name*: a file, a socket, a symlink (not followed), a tree.

    Nothing to do when it, the device's directory or the runtime directory is gone.
    """
    _check_name(name, "file name")
    try:
        with open_device_dir(root, device_id) as dir_fd:
            remove_at(dir_fd, name)
    except RuntimeDirError as exc:
        if not isinstance(exc.__cause__, FileNotFoundError):
            raise
    except OSError as exc:
        raise RuntimeDirError(f"cannot remove {name} of device {device_id}: {exc}") from exc


def _rename_over(src: str, src_dir: int, name: str, dir_fd: int) -> None:
    """Rename *src* to *name*, first removing a directory the device put at *name*.

    The device owns its directory's content, so what it left at one of our names
    is ours to replace; rename replaces anything but a directory by itself.
    """
    for attempt in range(_REPLACE_ATTEMPTS):
        try:
            os.rename(src, name, src_dir_fd=src_dir, dst_dir_fd=dir_fd)
            return
        except OSError as exc:
            if (
                exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST)
                or attempt == _REPLACE_ATTEMPTS - 1
            ):
                raise
        remove_at(dir_fd, name)


def write_private_file(root: Path, device_id: str, name: str, data: bytes, uid: int) -> None:
    """Write *data* to the device's file *name* (0600, owned by *uid*), replacing it atomically.

    The file is written under a fresh temporary name (``O_EXCL|O_NOFOLLOW``) and
    renamed over *name*: whatever the device put at *name* (a symlink, a file, a
    directory tree) is replaced, never followed. On failure (RuntimeDirError)
    nothing of ours is left behind.
    """
    _check_name(name, "file name")
    with open_device_dir(root, device_id) as dir_fd:
        temporary = f".{name}.{secrets.token_hex(6)}"
        try:
            fd = os.open(
                temporary,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=dir_fd,
            )
            try:
                os.fchown(fd, uid, uid)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            _rename_over(temporary, dir_fd, name, dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=dir_fd)
            raise RuntimeDirError(f"cannot write {name} for device {device_id}: {exc.strerror}") from exc


def bind_private_socket(root: Path, device_id: str, name: str, uid: int) -> socket.socket:
    """A listening unix socket at the device's *name*, 0600 and owned by *uid*.

    The socket is bound under a fresh name in ``devices/``, where only we write,
    given its mode and owner there, and renamed over *name* in the device's
    directory: whatever the device put at *name* (a stale socket, a symlink, a
    file, a directory tree) is replaced, never followed, and there is no moment
    at which the device could swap the node we chmod or chown. The caller owns
    the returned socket (non-blocking, ready for ``loop.create_unix_server(sock=…)``).
    """
    _check_name(name, "socket name")
    with _device_fds(root, device_id) as (devices, dir_fd):
        staged = f".{name}.{secrets.token_hex(6)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(f"/proc/self/fd/{devices}/{staged}")
            # Only we write in devices/: the name is the node we just bound.
            os.chmod(staged, 0o600, dir_fd=devices)
            os.chown(staged, uid, uid, dir_fd=devices, follow_symlinks=False)
            sock.listen(64)  # before it appears: the device's first connect finds a listener
            sock.setblocking(False)
            _rename_over(staged, devices, name, dir_fd)
        except BaseException as exc:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(staged, dir_fd=devices)
            if isinstance(exc, OSError):
                raise RuntimeDirError(f"cannot make {name} for device {device_id}: {exc.strerror}") from exc
            raise
        return sock


def connect_socket(root: Path, device_id: str, name: str, timeout: float | None = None) -> socket.socket:
    """A blocking unix socket connected to the device's *name*, never through a symlink.

    Raises RuntimeDirError when *name* is missing or is not a socket the device
    (or we) made: a symlink, a file, a FIFO, a socket with more than one link (a
    hard link to someone else's) or owned by another user. OSError (ECONNREFUSED,
    …) when nothing listens.
    """
    _check_name(name, "socket name")
    with open_device_dir(root, device_id) as dir_fd:
        return _connect_at(dir_fd, name, f"{name} of device {device_id}", timeout)


def connect_socket_at(path: Path, timeout: float | None = None) -> socket.socket:
    """As :func:`connect_socket`, for a device socket's path (``Settings.device_paths(id)``).

    For callers that hold a path rather than the root and the device id. Neither
    the socket nor its directory is followed if it is a symlink; the directories
    above are not checked again (:func:`ensure_root` did when Corral started).
    """
    _check_name(path.name, "socket name")
    dir_fd = _open_dir(path.parent, path.parent)
    try:
        return _connect_at(dir_fd, path.name, str(path), timeout)
    finally:
        os.close(dir_fd)


def _connect_at(dir_fd: int, name: str, label: str, timeout: float | None) -> socket.socket:
    try:
        node = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError as exc:
        raise RuntimeDirError(f"{label} does not exist") from exc
    try:
        info = os.fstat(node)
        if not stat.S_ISSOCK(info.st_mode):
            raise RuntimeDirError(f"{label} is not a socket; refused")
        owners = (os.fstat(dir_fd).st_uid, os.geteuid())
        if info.st_nlink != 1 or info.st_uid not in owners:
            raise RuntimeDirError(
                f"{label} is not the device's own socket (uid {info.st_uid}, {info.st_nlink} links); refused"
            )
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


def _check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise RuntimeDirError(
            f"invalid {what} {name!r}: 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        )
