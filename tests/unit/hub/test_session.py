import json

from agent.protocol import Event, Hello, Result, encode
from backend.hub.session import AgentSession


def _error_code(frame: str) -> str:
    return json.loads(frame)["code"]


def test_hello_then_events() -> None:
    session = AgentSession("d1")
    received = session.receive(encode(Hello(device_id="d1", agent_version="1")))
    assert received.replies == []
    assert isinstance(received.message, Hello)
    assert session.hello is not None
    event = session.receive(encode(Event(kind="log", data={"l": 1})))
    assert isinstance(event.message, Event)
    result = session.receive(encode(Result(id="c1", ok=True)))
    assert isinstance(result.message, Result)


def test_messages_before_hello_are_refused() -> None:
    session = AgentSession("d1")
    received = session.receive(encode(Event(kind="log")))
    assert received.message is None
    assert _error_code(received.replies[0]) == "hello_required"
    assert session.invalid_frames == 1


def test_hello_for_another_device_is_refused() -> None:
    session = AgentSession("d1")
    received = session.receive(encode(Hello(device_id="d2", agent_version="1")))
    assert _error_code(received.replies[0]) == "wrong_device"
    assert session.hello is None


def test_malformed_frames_are_counted_and_answered() -> None:
    session = AgentSession("d1")
    for frame in ["{", b"\x00", '{"type": "command", "id": "1", "name": "x"}']:
        received = session.receive(frame)
        assert received.message is None
        assert len(received.replies) == 1
    assert session.invalid_frames == 3
