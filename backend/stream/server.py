"""The stream proxy process: ``python -m backend.stream.server``.

Runs websockify's ``WebSocketProxy`` in its default mode, one forked process per
WebSocket connection, so every byte of every pane is pumped outside the app's
event loop and the per-connection target websockify keeps on its server object
is private to that connection's process. Do not switch it to ``--run-once`` or
``--libserver`` (threaded): both would share that target between connections.

Contract with the parent (``backend.stream.proxy``):

- ``--listen-fd``: an already listening TCP socket on a loopback address,
  inherited from the parent. The parent picks the port, knows it before this
  process starts, and keeps it across restarts.
- ``--token-source``: a ``PluginSource.encode()`` string (paths only, no secret).
- stdout: exactly one line, ``ready_line(port)``, once connections are served;
  afterwards stdout is redirected to stderr.
- stderr: whatever escapes logging (tracebacks); the parent forwards it.
- ``--log-file``: refusals and errors, never a token; per-connection chatter is
  dropped.
- SIGTERM to the process group stops the server and every connection at once.
  The process also gets SIGTERM when its parent dies (Linux), so a killed app
  does not leave the port open.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import logging
import os
import re
import signal
import socket
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockify.websocketproxy import ProxyRequestHandler, WebSocketProxy

from backend.stream.ready import ready_line
from backend.stream.token_plugin import UNIX_TARGET, StreamTokenPlugin

# websockify logs its few real errors at INFO, mixed with one INFO line per
# connection; keep only these.
_ERROR_MARKERS = ("Failed to connect", "handler exception", "socket failed")
_TOKEN_TEXT = re.compile(r"(token=)[^&\s'\"]+|v1\.[a-z]+\.[a-z0-9-]+\.\d+\.[A-Za-z0-9_-]+")
# TLS stays off (loopback only): websockify offers TLS only when this file exists.
_NO_CERT = "/nonexistent/corral-stream-proxy-has-no-tls-certificate"


def _redact(match: re.Match[str]) -> str:
    return f"{match.group(1)}<redacted>" if match.group(1) else "<redacted>"


class _QuietFilter(logging.Filter):
    """Keeps warnings, errors and websockify's error lines; blanks out tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno < logging.WARNING and not any(m in message for m in _ERROR_MARKERS):
            return False
        record.msg = _TOKEN_TEXT.sub(_redact, message)
        record.args = None
        return True


class _GatheringSocket:
    """The VNC socket as websockify's proxy loop sees it: a read also takes what is already waiting.

    websockify sends every read as one WebSocket message. A VNC server writes a
    screen update in several pieces, so one update became ~9 messages, each a
    wake-up for the proxy, the browser's network service and the pane's
    JavaScript; now ~2. Nothing waits for more data: latency stays that of a
    plain read (bench/stream_proxy.py).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, data: bytes) -> int:
        return self._sock.send(data)

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        pieces = [data]
        room = size - len(data)
        while data and room > 0:
            try:
                data = self._sock.recv(room, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            # b"" (closed) ends the loop; the next read returns b"" and ends the connection.
            pieces.append(data)
            room -= len(data)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class _Handler(ProxyRequestHandler):  # type: ignore[misc]
    """Refuses with 403 before any target socket is opened unless the token is valid."""

    # websockify's 64 KiB reads cost ~20 % of throughput on full frames (bench/stream_proxy.py).
    buffer_size = 262144

    def do_proxy(self, target: socket.socket) -> None:
        super().do_proxy(_GatheringSocket(target))

    def validate_connection(self) -> None:
        tokens = parse_qs(urlsplit(self.path).query).get("token") or [""]
        target = self.server.token_plugin.lookup(tokens[0])
        if target is None or target[0] != UNIX_TARGET:
            self.send_error(HTTPStatus.FORBIDDEN)
            # An empty reason: the plugin already logged why, without the token.
            raise self.server.EClose("")
        self.server.unix_target = target[1]
        # With a unix target websockify uses these only in messages, where
        # "Failed to connect to unix:<path>" beats "None:None".
        self.server.target_host, self.server.target_port = "unix", target[1]


class _Proxy(WebSocketProxy):  # type: ignore[misc]
    def started(self) -> None:
        super().started()
        os.write(sys.stdout.fileno(), ready_line(self.listen_port))
        # Nobody reads stdout after the ready line; send strays to stderr instead.
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def top_new_client(self, startsock: socket.socket, address: Any) -> None:
        # This runs in the connection's own process, which inherited the
        # server's SIGTERM handler; dying quietly on SIGTERM is what stop() wants.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        super().top_new_client(startsock, address)


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform != "linux":
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(0)


def _configure_logging(log_file: Path) -> None:
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_QuietFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _loopback_address(listen_fd: int) -> tuple[str, int]:
    """Address of the inherited socket; exits unless it is an IPv4 loopback listener."""
    with socket.socket(fileno=os.dup(listen_fd)) as sock:
        host, port = sock.getsockname()[:2]
        if sock.family != socket.AF_INET or not ipaddress.ip_address(host).is_loopback:
            sys.exit(f"refusing to serve on {host}:{port}, not an IPv4 loopback address")
    return str(host), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.stream.server")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--token-source", required=True)
    parser.add_argument("--log-file", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)

    _die_with_parent(args.parent_pid)
    host, port = _loopback_address(args.listen_fd)
    _configure_logging(args.log_file)
    try:
        plugin = StreamTokenPlugin(args.token_source)
    except (ValueError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 2
    server = _Proxy(
        RequestHandlerClass=_Handler,
        listen_fd=args.listen_fd,
        listen_host=host,
        listen_port=port,
        token_plugin=plugin,
        cert=_NO_CERT,
    )
    server.start_server()
    return 0


if __name__ == "__main__":
    sys.exit(main())
