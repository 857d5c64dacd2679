import json

import pytest

from agent.protocol import (
    MAX_RESULT_BYTES,
    Command,
    ErrorMessage,
    Event,
    Hello,
    ProtocolError,
    Result,
    decode,
    encode,
)


@pytest.mark.parametrize(
    "message",
    [
        Hello(device_id="d1", agent_version="0.1", capabilities=["ping"]),
        Command(id="c1", name="ping", args={"x": 1}),
        Result(id="c1", ok=True, data={"pong": 1}),
        Result(id="c1", ok=False, error="boom"),
        Event(kind="log", data={"line": "hi"}),
        ErrorMessage(code="invalid_message", message="bad"),
    ],
)
def test_round_trip(message) -> None:
    assert decode(encode(message)) == message


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_message"),
        ("[]", "invalid_message"),
        (json.dumps({"type": "nope"}), "invalid_message"),
        (json.dumps({"type": "hello"}), "invalid_message"),
        (json.dumps({"type": "command", "id": "", "name": "x"}), "invalid_message"),
        (json.dumps({"type": "event", "kind": "log", "extra": 1}), "invalid_message"),
        (b"\x00\x01", "binary_frame"),
        ("x" * (MAX_RESULT_BYTES + 1), "frame_too_large"),
    ],
)
def test_invalid_frames_raise_protocol_error(frame, code) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    assert info.value.code == code
