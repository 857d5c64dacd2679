"""The most recently used files of one kind, newest first (no Qt; the caller stores the list)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DEFAULT_LIMIT", "RecentFiles"]

DEFAULT_LIMIT = 10


class RecentFiles:
    """A bounded list of paths, newest first, without duplicates.

    Paths are compared as given (the caller passes absolute ones); the oldest
    falls off past *limit*.
    """

    def __init__(self, paths: Iterable[object] = (), *, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self._limit = limit
        self._paths: list[str] = []
        for path in paths:
            # Stored lists come back from settings files, which anyone may edit.
            if isinstance(path, str) and path and path not in self._paths:
                self._paths.append(path)
        del self._paths[limit:]

    def paths(self) -> list[str]:
        return list(self._paths)

    def add(self, path: str) -> None:
        """Put *path* first (moving it if already listed)."""
        if path in self._paths:
            self._paths.remove(path)
        self._paths.insert(0, path)
        del self._paths[self._limit :]

    def remove(self, path: str) -> None:
        if path in self._paths:
            self._paths.remove(path)

    def clear(self) -> None:
        self._paths.clear()
