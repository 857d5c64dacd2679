"""The view filter: what a view pane may send, fed whole, byte by byte and split anywhere."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.stream.exceptions import RfbViolation
from backend.stream.rfb_filter import MAX_ENCODINGS, ViewFilter

HANDSHAKE = b"RFB 003.008\n" + b"\x01" + b"\x01"  # version, security None, shared ClientInit

# Client messages as noVNC 1.7 writes them (core/rfb.js, RFB.messages), built by hand.
SET_PIXEL_FORMAT = bytes([0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0])
SET_ENCODINGS = bytes([2, 0, 0, 3]) + struct.pack("!iii", 0, 1, -223)
UPDATE_REQUEST = bytes([3, 1, 0, 0, 0, 0, 1, 64, 0, 240])
CONTINUOUS_UPDATES = bytes([150, 1, 0, 0, 0, 0, 1, 64, 0, 240])
FENCE = bytes([248, 0, 0, 0, 0, 0, 0, 3, 4]) + b"sync"
KEY_DOWN = bytes([4, 1, 0, 0, 0, 0, 0, 0x61])
POINTER = bytes([5, 1, 0, 17, 0, 23])
EXTENDED_POINTER = bytes([5, 0x81, 0, 17, 0, 23, 1])
CUT_TEXT = bytes([6, 0, 0, 0, 0, 0, 0, 6]) + b"secret"
EXTENDED_CUT_TEXT = bytes([6, 0, 0, 0]) + struct.pack("!i", -12) + bytes([0x10, 0, 0, 1]) + b"deflated"
QEMU_KEY = bytes([255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 30])
SET_DESKTOP_SIZE = bytes([251, 0, 2, 128, 1, 224, 1, 0]) + bytes(16)
XVP_REBOOT = bytes([250, 0, 1, 3])

FORWARDED = [SET_PIXEL_FORMAT, SET_ENCODINGS, UPDATE_REQUEST, CONTINUOUS_UPDATES, FENCE]
DROPPED = [KEY_DOWN, POINTER, EXTENDED_POINTER, CUT_TEXT, EXTENDED_CUT_TEXT, QEMU_KEY, SET_DESKTOP_SIZE]
DROPPED.append(XVP_REBOOT)


def _feed_in_pieces(data: bytes, cuts: list[int]) -> bytes:
    view_filter = ViewFilter()
    out = b""
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        out += view_filter.feed(data[start:cut])
        start = cut
    return out


def test_handshake_and_allowed_messages_pass_unchanged() -> None:
    data = HANDSHAKE + b"".join(FORWARDED)
    view_filter = ViewFilter()
    assert view_filter.feed(data) == data
    assert view_filter.forwarded == 3 + 5
    assert view_filter.dropped == 0


@pytest.mark.parametrize("message", DROPPED, ids=lambda m: f"type-{m[0]}-{len(m)}")
def test_input_is_dropped_and_what_follows_still_passes(message: bytes) -> None:
    view_filter = ViewFilter()
    out = view_filter.feed(HANDSHAKE + UPDATE_REQUEST + message + UPDATE_REQUEST)
    assert out == HANDSHAKE + UPDATE_REQUEST + UPDATE_REQUEST
    assert view_filter.dropped == 1


def test_a_mixed_stream_split_at_every_byte_boundary_gives_the_same_output() -> None:
    data = HANDSHAKE + b"".join(m for pair in zip(FORWARDED, DROPPED, strict=False) for m in pair)
    data += b"".join(DROPPED[len(FORWARDED) :]) + UPDATE_REQUEST
    expected = HANDSHAKE + b"".join(FORWARDED) + UPDATE_REQUEST
    for cut in range(len(data) + 1):
        assert _feed_in_pieces(data, [cut]) == expected, cut
    # One byte at a time.
    assert _feed_in_pieces(data, list(range(len(data)))) == expected


def test_nothing_is_forwarded_before_a_message_is_whole() -> None:
    view_filter = ViewFilter()
    view_filter.feed(HANDSHAKE)
    assert view_filter.feed(UPDATE_REQUEST[:9]) == b""
    assert view_filter.feed(UPDATE_REQUEST[9:]) == UPDATE_REQUEST


def test_a_long_clipboard_is_skipped_without_being_kept() -> None:
    view_filter = ViewFilter()
    view_filter.feed(HANDSHAKE)
    length = 10_000_000
    assert view_filter.feed(bytes([6, 0, 0, 0]) + struct.pack("!I", length)) == b""
    chunk = b"x" * 65536
    for _ in range(length // len(chunk)):
        assert view_filter.feed(chunk) == b""
    rest = length % len(chunk)
    assert view_filter.feed(b"x" * rest + UPDATE_REQUEST) == UPDATE_REQUEST
    assert view_filter.dropped == 1


CLOSES = {
    "protocol 3.3": b"RFB 003.003\n",
    "not RFB": b"GET / HTTP/1.1\r\n",
    "VNC authentication": b"RFB 003.008\n\x02",
    "exclusive ClientInit": b"RFB 003.008\n\x01\x00",
    "unknown message type": HANDSHAKE + bytes([7]),
    "gii": HANDSHAKE + bytes([253, 0, 0, 0]),
    "QEMU audio": HANDSHAKE + bytes([255, 1, 0, 0]),
    "too many encodings": HANDSHAKE + bytes([2, 0]) + struct.pack("!H", MAX_ENCODINGS + 1),
    "fence payload over 64": HANDSHAKE + bytes([248, 0, 0, 0, 0, 0, 0, 0, 65]),
}


@pytest.mark.parametrize("case", sorted(CLOSES))
def test_what_is_not_understood_closes(case: str) -> None:
    view_filter = ViewFilter()
    with pytest.raises(RfbViolation):
        view_filter.feed(CLOSES[case])
    # Closed for good: nothing more passes.
    with pytest.raises(RfbViolation):
        view_filter.feed(UPDATE_REQUEST)


def test_a_bad_version_closes_at_its_first_wrong_byte() -> None:
    view_filter = ViewFilter()
    assert view_filter.feed(b"RFB 003.00") == b""
    with pytest.raises(RfbViolation, match="ProtocolVersion"):
        view_filter.feed(b"3")


def test_protocol_3_7_is_accepted() -> None:
    data = b"RFB 003.007\n\x01\x01" + UPDATE_REQUEST
    assert ViewFilter().feed(data) == data


# -- fuzz ---------------------------------------------------------------------

_messages = st.sampled_from(FORWARDED + DROPPED)


@settings(max_examples=300, deadline=None)
@given(st.lists(_messages, max_size=30), st.lists(st.integers(min_value=0, max_value=2000), max_size=20))
def test_any_sequence_split_anywhere_forwards_exactly_the_allowed_messages(
    messages: list[bytes], cuts: list[int]
) -> None:
    data = HANDSHAKE + b"".join(messages)
    expected = HANDSHAKE + b"".join(m for m in messages if m in FORWARDED)
    assert _feed_in_pieces(data, [c for c in cuts if c <= len(data)]) == expected


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_arbitrary_bytes_either_close_or_forward_only_whole_allowed_messages(
    garbage: bytes, cuts: list[int]
) -> None:
    view_filter = ViewFilter()
    out = bytearray(view_filter.feed(HANDSHAKE))
    start = 0
    try:
        for cut in [*sorted(c for c in cuts if c <= len(garbage)), len(garbage)]:
            out += view_filter.feed(garbage[start:cut])
            start = cut
    except RfbViolation:
        pass
    _assert_only_allowed(bytes(out[len(HANDSHAKE) :]))


def _assert_only_allowed(out: bytes) -> None:
    """Parse *out* independently: only whole messages of the forwarded types."""
    at = 0
    while at < len(out):
        kind = out[at]
        if kind == 0:
            length = 20
        elif kind in (3, 150):
            length = 10
        elif kind == 2:
            (count,) = struct.unpack_from("!H", out, at + 2)
            length = 4 + 4 * count
        elif kind == 248:
            length = 9 + out[at + 8]
        else:
            raise AssertionError(f"forwarded a message of type {kind}")
        assert at + length <= len(out), "forwarded part of a message"
        at += length
