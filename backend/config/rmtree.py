"""Remove whatever a device left at a name: a file, a symlink, a socket, or a tree of any depth.

A device writes what it likes in its directory, so a tree to remove may be
deeper than Python's recursion limit (``shutil.rmtree`` raised RecursionError on
3,000 nested directories), wider than memory comfortably lists twice, or changed
while we remove it. :func:`remove_at` therefore:

- works from directory descriptors only (``unlink``/``rmdir``/``open`` with
  ``dir_fd``, directories opened ``O_NOFOLLOW``): a symlink is removed, never
  followed, wherever the device puts one, even mid-removal;
- is iterative, with an explicit stack of at most MAX_OPEN_DIRS directory
  descriptors: a directory found deeper than that is first renamed (one
  system call, nothing copied) to a fresh hidden name in the tree's top
  directory and removed from there later, so any depth costs a bounded number
  of descriptors and each entry is visited once;
- stays on the top directory's file system (a mount point below it is refused,
  as ``rm --one-file-system`` does);
- lists a directory twice (on entering it, and once its subdirectories are
  gone) and at most MAX_RELISTS more times when it was written into meanwhile,
  then gives up (OSError ENOTEMPTY): a device that keeps writing into what we
  remove cannot keep us busy for ever.

Blocking (system calls only); call it in a thread from the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from dataclasses import dataclass, field

__all__ = ["MAX_OPEN_DIRS", "MAX_RELISTS", "remove_at"]

MAX_OPEN_DIRS = 16
"""Directory descriptors a removal holds at once (besides the caller's)."""
MAX_RELISTS = 3
"""Extra listings of a directory written into while it is being removed."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class _Level:
    """A directory being emptied: its descriptor, its name in the level above, what is left to enter."""

    fd: int
    name: str
    subdirs: list[str] = field(default_factory=list)
    listings: int = 0


def remove_at(dir_fd: int, name: str) -> None:
    """Remove *name* in the directory *dir_fd*, and everything below it if it is a directory.

    Nothing to do when *name* is missing. Never follows a symlink. Raises OSError
    when something cannot be removed (what was removed stays removed).
    """
    try:
        os.unlink(name, dir_fd=dir_fd)
        return
    except FileNotFoundError:
        return
    except IsADirectoryError:
        pass  # Linux answers EISDIR for a directory; EPERM elsewhere is not handled (Linux only)
    top = _open(dir_fd, name)
    if top is None:
        return
    stack = [_Level(top, name)]
    device = os.fstat(top).st_dev
    try:
        while stack:
            level = stack[-1]
            if not level.subdirs:
                if level.listings >= 2 + MAX_RELISTS:
                    raise OSError(errno.ENOTEMPTY, f"{level.name} is refilled as fast as it is emptied")
                if _list(level):
                    continue
                stack.pop()
                os.close(level.fd)
                _rmdir(stack[-1].fd if stack else dir_fd, level, stack)
                continue
            child = level.subdirs.pop()
            if len(stack) >= MAX_OPEN_DIRS:
                # Too deep to hold one more descriptor: move the subtree up to the
                # top directory, which empties it later from a shallow stack.
                spill = f".corral-rm.{secrets.token_hex(8)}"
                with contextlib.suppress(FileNotFoundError):
                    os.rename(child, spill, src_dir_fd=level.fd, dst_dir_fd=stack[0].fd)
                    stack[0].subdirs.append(spill)
                continue
            fd = _open(level.fd, child)
            if fd is None:
                continue
            if os.fstat(fd).st_dev != device:
                os.close(fd)
                raise OSError(errno.EXDEV, f"{child} is a mount point; not removed")
            stack.append(_Level(fd, child))
    finally:
        for level in stack:
            os.close(level.fd)


def _open(dir_fd: int, name: str) -> int | None:
    """Open the directory *name*; remove it instead if it is not one (any more). None: nothing to enter."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    # Swapped for a symlink or a file since it was listed: remove that instead.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)
    return None


def _list(level: _Level) -> bool:
    """Unlink every non-directory in *level*, note its subdirectories; False when it had none."""
    level.listings += 1
    with os.scandir(level.fd) as entries:
        names = [entry.name for entry in entries]
    for entry in names:
        try:
            os.unlink(entry, dir_fd=level.fd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            level.subdirs.append(entry)
    return bool(level.subdirs)


def _rmdir(dir_fd: int, level: _Level, stack: list[_Level]) -> None:
    """Remove the emptied directory; if it was written into meanwhile, put it back on *stack*."""
    try:
        os.rmdir(level.name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
        fd = _open(dir_fd, level.name)
        if fd is not None:  # listed again, a bounded number of times (see remove_at)
            stack.append(_Level(fd, level.name, listings=level.listings))
