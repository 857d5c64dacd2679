"""The stream log opener: 0700 directory, 0600 file, no symlink, no FIFO, nothing lost."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from backend.stream.logfile import ensure_private_log, open_private_log


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_missing_directories_and_file_are_created_private(tmp_path: Path) -> None:
    log = tmp_path / "data" / "logs" / "stream-proxy.log"
    ensure_private_log(log)
    assert _mode(log.parent) == 0o700
    assert _mode(log) == 0o600
    assert log.read_text() == ""


def test_open_appends_and_tightens(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("before\n")
    log.chmod(0o644)
    with open_private_log(log) as stream:
        stream.write("after\n")
    assert log.read_text() == "before\nafter\n"
    assert _mode(log) == 0o600


def test_open_creates_the_file_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with open_private_log(tmp_path / "x.log"):
            pass
    finally:
        os.umask(old)
    assert _mode(tmp_path / "x.log") == 0o600


def test_a_symlinked_logs_directory_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "logs").symlink_to(elsewhere)
    with pytest.raises(NotADirectoryError):  # O_DIRECTORY | O_NOFOLLOW on a symlink
        ensure_private_log(tmp_path / "data" / "logs" / "stream-proxy.log")
    assert _mode(elsewhere) == 0o755
    assert list(elsewhere.iterdir()) == []


def test_a_fifo_in_place_of_the_log_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.log")
    with pytest.raises(OSError, match="No such device"):  # ENXIO: a FIFO with no reader
        open_private_log(tmp_path / "x.log")


def test_a_directory_in_place_of_the_log_is_refused(tmp_path: Path) -> None:
    (tmp_path / "logs" / "x.log").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        ensure_private_log(tmp_path / "logs" / "x.log")
