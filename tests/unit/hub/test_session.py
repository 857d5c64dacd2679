import json
import re
from collections import Counter

import pytest

from agent.protocol import MAX_FRAME_BYTES, Command, Event, Hello, Result, decode, encode
from backend.hub.session import AgentSession, CommandTooLarge


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
    command_id, _frame = session.command("ping", {})
    result = session.receive(encode(Result(id=command_id, ok=True)))
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


def _hello(session: AgentSession) -> None:
    session.receive(encode(Hello(device_id=session.device_id, agent_version="1")))


def test_command_ids_are_random_22_character_tokens() -> None:
    session = AgentSession("d1")
    ids = [session.command("ping", {})[0] for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", command_id) for command_id in ids)


def test_the_command_frame_carries_its_id_name_and_args() -> None:
    session = AgentSession("d1")
    command_id, frame = session.command("tap", {"target": {"text": "OK"}})
    assert decode(frame) == Command(id=command_id, name="tap", args={"target": {"text": "OK"}})
    assert session.pending == {command_id: "tap"}


def test_a_result_completes_its_command_once() -> None:
    session = AgentSession("d1")
    _hello(session)
    command_id, _ = session.command("ping", {})
    first = session.receive(encode(Result(id=command_id, ok=True, data={"pong": 1})))
    assert first.message == Result(id=command_id, ok=True, data={"pong": 1})
    again = session.receive(encode(Result(id=command_id, ok=True)))
    assert again == session.receive(encode(Result(id="never-issued", ok=True)))
    assert again.message is None and again.replies == []
    assert session.stray_results == 2
    assert session.invalid_frames == 0
    assert session.pending == {}


def test_a_forgotten_command_result_is_a_stray() -> None:
    session = AgentSession("d1")
    _hello(session)
    command_id, _ = session.command("tap", {})
    session.forget(command_id)
    assert session.receive(encode(Result(id=command_id, ok=True))).message is None
    assert session.stray_results == 1


def test_another_sessions_command_id_completes_nothing_here() -> None:
    totals: Counter[str] = Counter()
    mine, other = AgentSession("d1", totals), AgentSession("d2")
    _hello(mine)
    other_id, _ = other.command("ping", {})
    assert mine.receive(encode(Result(id=other_id, ok=True))).message is None
    assert other.pending == {other_id: "ping"}
    assert totals == Counter({"stray_results": 1})


def test_abandon_returns_and_clears_every_pending_command() -> None:
    session = AgentSession("d1")
    _hello(session)
    a, _ = session.command("tap", {})
    b, _ = session.command("screenshot", {})
    assert session.abandon() == {a: "tap", b: "screenshot"}
    assert session.receive(encode(Result(id=a, ok=True))).message is None
    assert session.stray_results == 1


def test_a_command_too_large_for_the_agent_is_refused_before_it_is_pending() -> None:
    session = AgentSession("d1")
    with pytest.raises(CommandTooLarge, match=f"at most {MAX_FRAME_BYTES}"):
        session.command("input_text", {"text": "x" * MAX_FRAME_BYTES})
    assert session.pending == {}
