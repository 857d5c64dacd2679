"""The proxy's reads take what is already waiting, as one message, and never wait for more."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from backend.stream.server import _GatheringSocket


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield left, right
    left.close()
    right.close()


def test_a_read_takes_every_piece_already_written(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    for piece in (b"header", b"pixels" * 100, b"more"):
        writer.sendall(piece)

    assert _GatheringSocket(reader).recv(65536) == b"header" + b"pixels" * 100 + b"more"


def test_a_read_stops_at_the_buffer_size(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    writer.sendall(b"a" * 100)
    gathering = _GatheringSocket(reader)

    assert gathering.recv(60) == b"a" * 60
    assert gathering.recv(60) == b"a" * 40


def test_a_read_does_not_wait_for_more(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    writer.sendall(b"frame")
    started = time.monotonic()

    assert _GatheringSocket(reader).recv(65536) == b"frame"
    assert time.monotonic() - started < 0.05


def test_a_closed_socket_reads_empty_after_the_last_bytes(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    writer.sendall(b"last")
    writer.close()
    gathering = _GatheringSocket(reader)

    assert gathering.recv(65536) == b"last"
    assert gathering.recv(65536) == b""
