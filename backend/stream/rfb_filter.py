"""View-only RFB: what a ``view`` pane may send to a device, decided byte by byte.

A sans-I/O parser of the client-to-server half of RFB 3.7/3.8 (RFC 6143 and
the community extensions noVNC 1.7 uses). Feed it what the client sent, in
pieces of any size; it returns the bytes to forward to the device, or raises
:class:`RfbViolation` when the connection must be closed. It never forwards a
partial message, so what the device reads is always a sequence of whole
messages this module understood, whatever the client sent.

Per client message (noVNC 1.7 ``core/rfb.js``, ``RFB.messages``), its verdict and why:

- 0 SetPixelFormat: forward; this connection's pixel format only.
- 2 SetEncodings: forward; this connection's encodings only (at most
  ``MAX_ENCODINGS``).
- 3 FramebufferUpdateRequest: forward; asks for pixels, changes nothing.
- 150 EnableContinuousUpdates: forward; this connection's update mode only.
- 248 ClientFence: forward; flow control of this connection only (payload at
  most 64 bytes, as the spec says).
- 4 KeyEvent: drop; input.
- 5 PointerEvent: drop; input (6 bytes, or 7 with the marker bit of
  ExtendedMouseButtons, as noVNC sends it once the server agreed; a client
  pressing button 8 without that extension is misread and, in practice,
  closed: noVNC masks that bit off).
- 6 ClientCutText: drop; writes the device's clipboard. Every form (legacy
  text; extended caps, notify, request, provide: a negative length) is skipped
  to its end.
- 250 xvp: drop; shutdown, reboot or reset of the device.
- 251 SetDesktopSize: drop; resizes the device's screen for everyone.
- 255 QEMU subtype 0 (extended key event): drop; input.
- anything else, other QEMU subtypes included: close; not understood, so not
  known to be safe.

The handshake is checked too: ProtocolVersion must be 3.7 or 3.8 (3.3 lets the
server pick a security type this parser could not follow), the security type
must be None (devices need no VNC password: the proxy's token is the
authentication), and ClientInit must ask for a *shared* session, since a
non-shared one makes the server disconnect the other viewers, including the
operator in control.

Memory is bounded: at most ``MAX_PENDING`` bytes are held between calls; a
dropped message's payload is counted off, never kept.
"""

from __future__ import annotations

import struct
from enum import Enum, auto

from backend.stream.exceptions import RfbViolation

__all__ = ["MAX_ENCODINGS", "MAX_PENDING", "ViewFilter"]

MAX_ENCODINGS = 256
"""Most encodings a SetEncodings may list (noVNC sends about 25)."""
_MAX_FENCE_PAYLOAD = 64
MAX_PENDING = 4 + 4 * MAX_ENCODINGS
"""Most bytes the filter keeps between calls (the longest message it forwards)."""

_VERSIONS = (b"RFB 003.007\n", b"RFB 003.008\n")
_SECURITY_NONE = 1
_SHARED = 1

# Message types.
_SET_PIXEL_FORMAT = 0
_SET_ENCODINGS = 2
_FRAMEBUFFER_UPDATE_REQUEST = 3
_KEY_EVENT = 4
_POINTER_EVENT = 5
_CLIENT_CUT_TEXT = 6
_ENABLE_CONTINUOUS_UPDATES = 150
_CLIENT_FENCE = 248
_XVP = 250
_SET_DESKTOP_SIZE = 251
_QEMU = 255
_QEMU_EXTENDED_KEY_EVENT = 0

# Fixed lengths, type byte included.
_FIXED_FORWARD = {_SET_PIXEL_FORMAT: 20, _FRAMEBUFFER_UPDATE_REQUEST: 10, _ENABLE_CONTINUOUS_UPDATES: 10}
_FIXED_DROP = {_KEY_EVENT: 8, _XVP: 4}
_POINTER_MARKER = 0x80


class _Phase(Enum):
    VERSION = auto()
    SECURITY = auto()
    CLIENT_INIT = auto()
    MESSAGES = auto()


class ViewFilter:
    """Client-to-server RFB filter of one ``view`` connection.

    Call :meth:`feed` with each chunk the client sent, in order; forward what it
    returns. After it raised :class:`RfbViolation` the filter is closed: every
    further call raises again. Counters say what was dropped (tests, logs).
    """

    def __init__(self) -> None:
        self._phase = _Phase.VERSION
        self._pending = bytearray()
        self._at = 0
        self._skip = 0
        self._closed: str | None = None
        self.forwarded = 0
        """Whole messages forwarded (handshake included)."""
        self.dropped = 0
        """Whole messages dropped."""

    def feed(self, data: bytes) -> bytes:
        """Bytes to forward for *data*: whole allowed messages, possibly none (``b""``).

        Raises RfbViolation for anything not known to leave the device unchanged.
        """
        if self._closed is not None:
            raise RfbViolation(self._closed)
        view = memoryview(data)
        if self._skip:
            skipped = min(self._skip, len(view))
            self._skip -= skipped
            view = view[skipped:]
            if not self._skip:
                self.dropped += 1
        if not view:
            return b""
        self._pending += view
        out = bytearray()
        # Parse at an offset and cut once: deleting from the front per message
        # would make a chunk of many small messages cost quadratic time.
        self._at = 0
        try:
            while self._at < len(self._pending) and not self._skip:
                taken = self._step(out)
                if taken == 0:
                    break
                self._at += taken
        except RfbViolation as exc:
            self._closed = str(exc)
            self._pending.clear()
            raise
        del self._pending[: self._at]
        return bytes(out)

    # -- one step: consume one whole unit at _at, or return 0 to wait for more ----

    def _available(self) -> int:
        return len(self._pending) - self._at

    def _byte(self, index: int) -> int:
        return self._pending[self._at + index]

    def _step(self, out: bytearray) -> int:
        if self._phase is _Phase.VERSION:
            return self._version(out)
        if self._phase is _Phase.SECURITY:
            return self._single(out, _SECURITY_NONE, _Phase.CLIENT_INIT, "security type")
        if self._phase is _Phase.CLIENT_INIT:
            return self._single(out, _SHARED, _Phase.MESSAGES, "ClientInit (only a shared session)")
        return self._message(out)

    def _version(self, out: bytearray) -> int:
        got = bytes(self._pending[self._at : self._at + 12])
        if not any(version.startswith(got) for version in _VERSIONS):
            raise RfbViolation(f"unsupported ProtocolVersion {got!r}")
        if len(got) < 12:
            return 0
        self._phase = _Phase.SECURITY
        return self._forward(out, 12)

    def _single(self, out: bytearray, allowed: int, after: _Phase, what: str) -> int:
        if self._byte(0) != allowed:
            raise RfbViolation(f"{what} {self._byte(0)} not allowed")
        self._phase = after
        return self._forward(out, 1)

    def _message(self, out: bytearray) -> int:
        kind = self._byte(0)
        available = self._available()
        if kind in _FIXED_FORWARD:
            return self._forward(out, _FIXED_FORWARD[kind])
        if kind in _FIXED_DROP:
            return self._drop(_FIXED_DROP[kind])
        if kind == _POINTER_EVENT:
            if available < 2:
                return 0
            return self._drop(7 if self._byte(1) & _POINTER_MARKER else 6)
        if kind == _SET_ENCODINGS:
            if available < 4:
                return 0
            (count,) = struct.unpack_from("!H", self._pending, self._at + 2)
            if count > MAX_ENCODINGS:
                raise RfbViolation(f"SetEncodings lists {count} encodings, more than {MAX_ENCODINGS}")
            return self._forward(out, 4 + 4 * count)
        if kind == _CLIENT_FENCE:
            if available < 9:
                return 0
            length = self._byte(8)
            if length > _MAX_FENCE_PAYLOAD:
                raise RfbViolation(f"ClientFence payload of {length} bytes, more than {_MAX_FENCE_PAYLOAD}")
            return self._forward(out, 9 + length)
        if kind == _CLIENT_CUT_TEXT:
            if available < 8:
                return 0
            (length,) = struct.unpack_from("!i", self._pending, self._at + 4)
            # A negative length is the extended clipboard form: abs(length) bytes follow.
            return self._drop(8 + abs(length))
        if kind == _SET_DESKTOP_SIZE:
            if available < 7:
                return 0
            return self._drop(8 + 16 * self._byte(6))
        if kind == _QEMU:
            if available < 2:
                return 0
            if self._byte(1) != _QEMU_EXTENDED_KEY_EVENT:
                raise RfbViolation(f"QEMU client message subtype {self._byte(1)} not allowed")
            return self._drop(12)
        raise RfbViolation(f"client message type {kind} not allowed")

    def _forward(self, out: bytearray, length: int) -> int:
        if self._available() < length:
            return 0
        out += self._pending[self._at : self._at + length]
        self.forwarded += 1
        return length

    def _drop(self, length: int) -> int:
        """Drop a message of *length* bytes; what has not arrived yet is skipped as it comes."""
        held = min(length, self._available())
        self._skip = length - held
        if not self._skip:
            self.dropped += 1
        return held
