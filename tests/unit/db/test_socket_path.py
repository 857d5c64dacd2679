"""A data directory whose Postgres socket path would not fit a unix socket is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.db.embedded import check_socket_path
from backend.db.exceptions import DatabaseUnavailable


def _data_dir(length: int) -> Path:
    path = Path("/tmp/" + "d" * (length - len("/tmp/")))
    assert len(str(path)) == length
    return path


def test_the_longest_data_dir_that_fits_passes() -> None:
    # 86 + len("/pgdata/.s.PGSQL.5432") = 107 bytes, what sun_path holds besides its NUL.
    check_socket_path(_data_dir(86) / "pgdata")


def test_one_byte_more_is_refused_with_the_fix() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        check_socket_path(_data_dir(87) / "pgdata")
    assert str(caught.value) == (
        f"the data directory {_data_dir(87)} is too long a path for the embedded Postgres: its socket"
        " would be 108 bytes long, more than a unix socket allows (107); set CORRAL_DATA_DIR to a"
        " shorter path (at most 86 bytes)"
    )


def test_bytes_not_characters_are_counted() -> None:
    # "/tmp/" and 62 two-byte characters: 67 characters but 129 bytes, + 21 for the socket.
    with pytest.raises(DatabaseUnavailable, match="would be 150 bytes long"):
        check_socket_path(Path("/tmp/" + "é" * 62) / "pgdata")
