"""The relay's handshake slots: a newcomer evicts the oldest half-sent request, never a sent one."""

from __future__ import annotations

from typing import cast

from backend.stream.relay import MAX_HANDSHAKES, _Connection, _Handshakes, _RefusalLog


class _Transport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


class _Conn:
    """Stands in for a connection: whether its whole request arrived, and whether it was aborted."""

    def __init__(self, request_sent: bool = False) -> None:
        self.request = object() if request_sent else None
        self.transport = _Transport()


def _start(handshakes: _Handshakes, connection: _Conn) -> None:
    handshakes.started(cast(_Connection, connection))


def test_a_newcomer_evicts_the_oldest_half_sent_request_when_all_slots_are_taken() -> None:
    handshakes = _Handshakes(_RefusalLog())
    flood = [_Conn() for _ in range(MAX_HANDSHAKES)]
    for connection in flood:
        _start(handshakes, connection)
    pane = _Conn()
    _start(handshakes, pane)
    assert len(handshakes) == 64
    assert [c.transport.aborted for c in flood[:2]] == [True, False]
    assert not pane.transport.aborted
    newer = _Conn()
    _start(handshakes, newer)
    assert len(handshakes) == 64
    assert [c.transport.aborted for c in flood[:3]] == [True, True, False]
    assert not pane.transport.aborted and not newer.transport.aborted


def test_a_connection_whose_request_arrived_is_not_evicted() -> None:
    handshakes = _Handshakes(_RefusalLog())
    sent = _Conn(request_sent=True)
    _start(handshakes, sent)
    flood = [_Conn() for _ in range(MAX_HANDSHAKES - 1)]
    for connection in flood:
        _start(handshakes, connection)
    _start(handshakes, _Conn())
    assert not sent.transport.aborted
    assert flood[0].transport.aborted


def test_a_newcomer_is_refused_when_every_slot_holds_a_sent_request() -> None:
    handshakes = _Handshakes(_RefusalLog())
    sent = [_Conn(request_sent=True) for _ in range(MAX_HANDSHAKES)]
    for connection in sent:
        _start(handshakes, connection)
    newcomer = _Conn()
    _start(handshakes, newcomer)
    assert newcomer.transport.aborted
    assert not any(c.transport.aborted for c in sent)
    assert len(handshakes) == 64


def test_a_connection_leaves_its_slot_once_however_often_it_is_counted_out() -> None:
    handshakes = _Handshakes(_RefusalLog())
    first, second = _Conn(), _Conn()
    _start(handshakes, first)
    _start(handshakes, second)
    handshakes.ended(cast(_Connection, first))
    handshakes.ended(cast(_Connection, first))  # handshake done, then the connection closed
    assert len(handshakes) == 1
