"""remove_at against a device writing into the tree while it is removed."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.config import rmtree


@pytest.fixture
def parent(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def _refill_before_rmdir(monkeypatch: pytest.MonkeyPatch, tree: Path, times: int) -> list[int]:
    """Before *times* rmdir calls of *tree*, a file appears in it (the device racing us)."""
    real_rmdir = os.rmdir
    refills: list[int] = []

    def racing_rmdir(name: str, *, dir_fd: int | None = None) -> None:
        if name == tree.name and len(refills) < times:
            refills.append(1)
            (tree / f"new{len(refills)}").write_bytes(b"")
        real_rmdir(name, dir_fd=dir_fd)

    monkeypatch.setattr(rmtree.os, "rmdir", racing_rmdir)
    return refills


def test_a_directory_refilled_once_is_emptied_again(
    tmp_path: Path, parent: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    refills = _refill_before_rmdir(monkeypatch, tree, times=1)
    rmtree.remove_at(parent, "tree")
    assert (len(refills), tree.exists()) == (1, False)


def test_a_directory_refilled_for_ever_is_given_up_on(
    tmp_path: Path, parent: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    refills = _refill_before_rmdir(monkeypatch, tree, times=1000)
    with pytest.raises(OSError, match="tree is refilled as fast as it is emptied") as caught:
        rmtree.remove_at(parent, "tree")
    assert caught.value.errno == errno.ENOTEMPTY
    # listed (and emptied) at most 2 + MAX_RELISTS (3) = 5 times, refilled after each
    assert len(refills) == 5


def test_a_name_that_is_a_file_or_missing(tmp_path: Path, parent: int) -> None:
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    rmtree.remove_at(parent, "link")
    rmtree.remove_at(parent, "missing")
    assert sorted(os.listdir(tmp_path)) == ["file"]
    rmtree.remove_at(parent, "file")
    assert os.listdir(tmp_path) == []
