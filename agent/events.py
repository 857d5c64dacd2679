"""Agent events waiting for the hub: a bounded buffer and a rate limit. Pure, no I/O.

Events (``event`` messages, :class:`agent.protocol.Event`) are what the agent
noticed on its own: the browser launched or crashed, a page logged an error. The
client queues them in an :class:`EventBuffer` whether or not it is connected and
sends them in order after ``hello``. While the hub is away the buffer keeps the
newest :attr:`EventBuffer.capacity` events; older ones are dropped and counted,
and the next send starts with one event saying how many.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from agent.protocol import Event

__all__ = ["DEFAULT_CAPACITY", "EventBuffer", "RateLimit", "with_suppressed"]

DEFAULT_CAPACITY = 1000


class EventBuffer:
    """FIFO of events holding at most *capacity*; appending to a full buffer drops the oldest.

    The sender calls :meth:`peek`, sends, then :meth:`pop` with what it sent, so
    an event leaves the buffer only once it went out. :attr:`dropped` counts
    drops not reported yet; while it is non-zero :meth:`peek` first returns the
    report: a ``log`` event at level ``warning`` with ``data["dropped"]``.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.dropped = 0
        self._events: deque[Event] = deque()
        self._report: tuple[Event, int] | None = None

    def __len__(self) -> int:
        """Events waiting, the drop report included."""
        return len(self._events) + (1 if self.dropped else 0)

    def append(self, event: Event) -> None:
        if len(self._events) >= self.capacity:
            self._events.popleft()
            self.dropped += 1
        self._events.append(event)

    def peek(self) -> Event | None:
        """The next event to send, or None when there is none."""
        if self.dropped:
            if self._report is None or self._report[1] != self.dropped:
                self._report = (self._drop_report(self.dropped), self.dropped)
            return self._report[0]
        return self._events[0] if self._events else None

    @staticmethod
    def _drop_report(dropped: int) -> Event:
        return Event(
            kind="log",
            data={
                "level": "warning",
                "source": "agent",
                "message": f"{dropped} agent events were dropped while the hub was unreachable",
                "dropped": dropped,
            },
        )

    def pop(self, sent: Event) -> None:
        """Forget *sent*, which :meth:`peek` returned and which went out."""
        if self._report is not None and sent is self._report[0]:
            self.dropped -= self._report[1]
            self._report = None
        elif self._events and self._events[0] is sent:
            self._events.popleft()
        elif self.dropped:
            # *sent* was dropped by an append while it was being sent: it was not lost after all.
            self.dropped -= 1


class RateLimit:
    """A token bucket: *rate* events per second on average, bursts of *burst*.

    :meth:`allow` says whether one more event may go now; refused events are
    counted in :attr:`suppressed` so the next allowed one can say how many were
    skipped (:meth:`take_suppressed`).
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()
        self.suppressed = 0

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        count, self.suppressed = self.suppressed, 0
        return count


def with_suppressed(data: dict[str, Any], limit: RateLimit) -> dict[str, Any]:
    """*data* plus ``suppressed`` when *limit* refused events since the last allowed one."""
    skipped = limit.take_suppressed()
    return {**data, "suppressed": skipped} if skipped else data
