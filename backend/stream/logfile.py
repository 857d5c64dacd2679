"""The stream proxy's log: a 0600 file in a 0700 directory, never opened through a symlink.

The log names devices, refused connections and errors, which another local user
has no business reading. Left to the umask, the directory was 0755 and the file
0644; a directory or file left that way by an earlier version is tightened.
Both the app (``StreamProxy.start``) and the relay process (its log handler)
open the file this way, so whichever creates it, it is created 0600.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import TextIO

__all__ = ["LOG_DIR_MODE", "LOG_FILE_MODE", "ensure_private_log", "open_private_log"]

LOG_DIR_MODE = 0o700
LOG_FILE_MODE = 0o600


def ensure_private_log(path: Path) -> None:
    """Create *path*'s directory (0700) and *path* (0600) if missing; tighten them if not.

    The data directory above is created as needed (its mode is not changed).
    Blocking. Raises OSError when either cannot be made private: a symlink, not
    a directory or regular file, or owned by another user.
    """
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path.parent, LOG_DIR_MODE)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _make_private(directory, path.parent, stat.S_IFDIR, LOG_DIR_MODE)
        os.close(_open_file(path.name, directory, path))
    finally:
        os.close(directory)


def open_private_log(path: Path) -> TextIO:
    """Open *path* to append text, creating it 0600 or tightening it to 0600.

    Blocking. Raises OSError for a symlink, anything but a regular file, or a
    file owned by another user. The caller closes the stream.
    """
    return os.fdopen(_open_file(str(path), None, path), "a", encoding="utf-8")


def _open_file(name: str, directory: int | None, path: Path) -> int:
    # O_NONBLOCK: a FIFO in its place fails (ENXIO) instead of hanging the
    # open; it changes nothing for a regular file.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(name, flags, LOG_FILE_MODE, dir_fd=directory)
    try:
        _make_private(fd, path, stat.S_IFREG, LOG_FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_private(fd: int, path: Path, kind: int, mode: int) -> None:
    """Check that *fd* is a *kind* (S_IFDIR or S_IFREG) of this user's, and set its *mode*."""
    info = os.fstat(fd)
    if stat.S_IFMT(info.st_mode) != kind:
        wanted = "a directory" if kind == stat.S_IFDIR else "a regular file"
        raise OSError(errno.EINVAL, f"not {wanted}", str(path))
    if info.st_uid != os.geteuid():
        raise PermissionError(errno.EPERM, f"owned by uid {info.st_uid}, not by this user", str(path))
    if stat.S_IMODE(info.st_mode) != mode:
        os.fchmod(fd, mode)
