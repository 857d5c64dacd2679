"""Results may carry 8 MiB (screenshots); every other message stays at 1 MiB."""

import pytest

from agent.protocol import (
    MAX_FRAME_BYTES,
    MAX_RESULT_BYTES,
    Event,
    Hello,
    ProtocolError,
    Result,
    decode,
    encode,
)


def test_the_limits_are_1_and_8_mib() -> None:
    assert (MAX_FRAME_BYTES, MAX_RESULT_BYTES) == (1_048_576, 8_388_608)


def test_a_result_up_to_8_mib_is_accepted() -> None:
    png = "A" * (MAX_RESULT_BYTES - 100)
    frame = encode(Result(id="c1", ok=True, data={"png": png}))
    assert MAX_RESULT_BYTES - 100 < len(frame) <= MAX_RESULT_BYTES
    assert decode(frame) == Result(id="c1", ok=True, data={"png": png})


def test_a_result_over_8_mib_is_refused() -> None:
    frame = encode(Result(id="c1", ok=True, data={"png": "A" * MAX_RESULT_BYTES}))
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    assert (info.value.code, str(info.value)) == ("frame_too_large", "frame exceeds 8388608 bytes")


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (Event(kind="log", data={"line": "x" * MAX_FRAME_BYTES}), "event"),
        (Hello(device_id="d1", agent_version="1", capabilities=["x" * MAX_FRAME_BYTES]), "hello"),
    ],
)
def test_other_messages_over_1_mib_are_refused(message: Event | Hello, kind: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(encode(message))
    assert info.value.code == "frame_too_large"
    assert str(info.value) == f"a {kind} frame exceeds 1048576 bytes (only results may)"
