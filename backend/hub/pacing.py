"""How fast the hub reads one agent connection: a budget of frames and bytes per second.

A device is untrusted and can send frames as fast as its socket takes them. Each
frame costs the host's event loop (the window's too) its JSON validation: about
13 µs for a small event and 13 ms for an 8 MiB result, measured; a device
flooding either kept half a core of the host busy and tripled another device's
``corral exec`` round trip. The hub therefore reads each connection within
:data:`FRAMES_PER_SECOND` frames and :data:`BYTES_PER_SECOND` bytes a second
(with bursts of twice that): over it, the hub pauses before reading the next frame,
so the flood waits in the device's own socket buffer (websockets reads no further
while its one-frame queue is full). An agent sends a few frames a second; the
hub benchmark's 1,000-event bursts per agent fit in the burst.

Pure (no I/O): :meth:`ReadPacing.spend` says how long to pause.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["BYTES_PER_SECOND", "FRAMES_PER_SECOND", "MIN_PAUSE", "ReadPacing"]

FRAMES_PER_SECOND = 1000.0
BYTES_PER_SECOND = float(16 << 20)
_BURST_SECONDS = 2.0
MIN_PAUSE = 0.01
"""Debts shorter than this are let run up: one timer per frame would cost more than the frame."""


class ReadPacing:
    """Two token buckets (frames, bytes) of one connection; *clock* is ``time.monotonic`` but in tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._at = clock()
        self._frames = FRAMES_PER_SECOND * _BURST_SECONDS
        self._bytes = BYTES_PER_SECOND * _BURST_SECONDS

    def spend(self, size: int) -> float:
        """Count one frame of *size* bytes; return the seconds to wait before reading the next (0.0: none)."""
        now = self._clock()
        elapsed, self._at = now - self._at, now
        self._frames = min(FRAMES_PER_SECOND * _BURST_SECONDS, self._frames + elapsed * FRAMES_PER_SECOND) - 1
        self._bytes = min(BYTES_PER_SECOND * _BURST_SECONDS, self._bytes + elapsed * BYTES_PER_SECOND) - size
        pause = max(0.0, -self._frames / FRAMES_PER_SECOND, -self._bytes / BYTES_PER_SECOND)
        return pause if pause >= MIN_PAUSE else 0.0
