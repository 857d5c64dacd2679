"""The agent's event buffer and rate limit (agent.events): pure logic."""

from __future__ import annotations

import pytest

from agent.events import EventBuffer, RateLimit, with_suppressed
from agent.protocol import Event


def _event(n: int) -> Event:
    return Event(kind="log", data={"n": n})


def _drain(buffer: EventBuffer) -> list[dict[str, object]]:
    sent = []
    while (event := buffer.peek()) is not None:
        sent.append(event.data)
        buffer.pop(event)
    return sent


def test_keeps_order_and_drops_the_oldest_with_one_report_first() -> None:
    buffer = EventBuffer(capacity=3)
    for n in range(5):
        buffer.append(_event(n))
    assert buffer.dropped == 2
    assert len(buffer) == 4
    sent = _drain(buffer)
    assert sent[0]["dropped"] == 2 and sent[0]["level"] == "warning"
    assert sent[0]["message"] == "2 agent events were dropped while the hub was unreachable"
    assert sent[1:] == [{"n": 2}, {"n": 3}, {"n": 4}]
    assert buffer.dropped == 0 and len(buffer) == 0 and buffer.peek() is None


def test_drops_while_the_report_is_being_sent_are_reported_next() -> None:
    buffer = EventBuffer(capacity=1)
    buffer.append(_event(0))
    buffer.append(_event(1))  # drops 0
    report = buffer.peek()
    assert report is not None and report.data["dropped"] == 1
    buffer.append(_event(2))  # drops 1 while the report is on the wire
    buffer.pop(report)
    assert _drain(buffer) == [
        {
            "level": "warning",
            "source": "agent",
            "message": "1 agent events were dropped while the hub was unreachable",
            "dropped": 1,
        },
        {"n": 2},
    ]


def test_an_event_dropped_while_it_was_sent_is_not_counted_as_lost() -> None:
    buffer = EventBuffer(capacity=1)
    buffer.append(_event(0))
    first = buffer.peek()
    assert first is not None
    buffer.append(_event(1))  # drops 0, which is being sent right now
    buffer.pop(first)
    assert buffer.dropped == 0
    assert _drain(buffer) == [{"n": 1}]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        EventBuffer(capacity=0)


def test_rate_limit_allows_a_burst_then_the_rate_and_counts_the_rest() -> None:
    now = [100.0]
    limit = RateLimit(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limit.allow() for _ in range(5)] == [True, True, True, False, False]
    assert limit.suppressed == 2
    now[0] += 0.5  # one token back
    assert limit.allow() is True
    assert with_suppressed({"message": "x"}, limit) == {"message": "x", "suppressed": 2}
    assert with_suppressed({"message": "y"}, limit) == {"message": "y"}
