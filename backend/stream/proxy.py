"""The stream proxy: one loopback TCP listener in front of every device's VNC socket.

``StreamProxy`` owns the listening socket and a supervised relay process
(``backend.stream.relay``, one asyncio loop for every pane) that serves it.
Panes connect with a URL from ``pane_url()``, which names one device and carries
a short-lived, single-use ``view`` or ``control`` token for it; the relay checks
both before it opens that device's ``vnc.sock``, and drops a ``view`` pane's
input (``backend.stream.rfb_filter``).

No stream byte passes through this process: the event loop (which Qt shares)
only starts, watches and stops the proxy process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import ipaddress
import logging
import math
import os
import signal
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

from backend.auth.exceptions import TokenError
from backend.auth.tokens import sign
from backend.config import Settings
from backend.stream.admission import Scope, stream_path
from backend.stream.exceptions import InvalidDeviceIdError, ProxyNotRunningError, ProxyStartError
from backend.stream.logfile import ensure_private_log
from backend.stream.ready import ready_line

__all__ = ["StreamProxy"]

logger = logging.getLogger(__name__)

START_TIMEOUT = 10.0
"""Seconds the proxy process gets to report ready."""
STOP_TIMEOUT = 5.0
"""Seconds between SIGTERM and SIGKILL on stop."""
RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 30.0
"""A process that ran this long resets the restart backoff."""
LOG_NAME = "stream-proxy.log"

# Where ``backend`` is importable from, for the child's PYTHONPATH: the app may
# run from any working directory, or from a source tree that is not installed.
_IMPORT_ROOT = Path(__file__).resolve().parents[2]


class StreamProxy:
    """Serves device VNC sockets to panes over WebSocket, one single-use token per connection.

    Call ``start()`` once on the event loop, ``stop()`` when done; both are
    coroutines and never block the loop. While started, the proxy process is
    restarted with backoff if it dies; the port stays the same, so a URL asked
    for once it died works with the restarted process (its connection waits in
    the socket's backlog). URLs issued before it died do not: the new process
    cannot know which of them were used.

    ``secret`` must be the content of ``settings.secret_path``: the proxy process
    reads the secret from that file (it never travels on a command line), and
    ``start()`` raises ProxyStartError when the two differ.
    """

    def __init__(self, settings: Settings, secret: bytes) -> None:
        self._settings = settings
        self._secret = secret
        self._listener: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        # Tokens signed before this whole second are refused by the relay: the
        # previous one may have used them, and its replay guard died with it.
        # Signing with a whole-second TTL, never at an earlier time, makes that
        # cut exact (see backend.stream.admission).
        self._not_before = 0
        self._cut_for: int | None = None
        self._token_ttl = math.ceil(settings.stream_token_ttl)
        self._ready = False
        self._supervisor: asyncio.Task[None] | None = None
        self._stderr_tasks: set[asyncio.Task[None]] = set()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=5)

    # -- public surface ---------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port on ``settings.stream_host``. Raises ProxyNotRunningError before start()."""
        return int(self._require_listener().getsockname()[1])

    @property
    def running(self) -> bool:
        """True while the proxy process is up and serving."""
        return self._ready and self._process is not None and self._process.returncode is None

    @property
    def log_path(self) -> Path:
        """The proxy process's log (0600, in a 0700 directory): refusals and errors, never tokens."""
        return self._settings.data_dir / "logs" / LOG_NAME

    def pane_url(self, device_id: str, scope: Scope = "view") -> str:
        """A WebSocket URL that opens *device_id*'s VNC stream once, with a fresh token.

        With ``scope="view"`` the proxy drops the pane's keys, pointer events and
        clipboard (and closes it for anything it does not understand); with
        ``"control"`` they reach the device. The URL opens one connection, within
        ``settings.stream_token_ttl`` seconds (rounded up to a whole second), and
        only with the proxy process it was issued for (a restarted one refuses
        it): ask for a new URL for every (re)connect. Raises
        ProxyNotRunningError before start() or after stop(), InvalidDeviceIdError
        for an id no token can name, ValueError for another scope. The device
        need not exist yet: a URL for a device without a VNC socket is accepted
        and then closed.
        """
        if scope not in ("view", "control"):
            raise ValueError(f"scope must be 'view' or 'control', not {scope!r}")
        host = self._settings.stream_host
        port = self.port
        try:
            if self._process is not None and self._process.returncode is not None:
                self._cut_tokens_of(self._process)  # this token is for the next relay
            now = max(time.time(), self._not_before)
            token = sign(self._secret, scope, device_id, self._token_ttl, now=now)
        except TokenError as exc:
            raise InvalidDeviceIdError(f"{device_id!r} is not a valid device id") from exc
        return f"ws://{host}:{port}{stream_path(device_id)}?{urlencode({'token': token})}"

    async def start(self) -> None:
        """Bind the listener, start the proxy process and wait until it serves.

        Raises ProxyStartError when the host is not an IPv4 loopback address, the
        port is taken, the secret file does not match, the log cannot be kept
        private (``logfile.ensure_private_log``), or the process does not report
        ready within START_TIMEOUT seconds. Calling it again while started
        does nothing.
        """
        if self._listener is not None:
            return
        self._check_secret_file()
        try:
            await asyncio.to_thread(ensure_private_log, self.log_path)
        except OSError as exc:
            raise ProxyStartError(f"cannot keep the stream proxy log private: {exc}") from exc
        self._listener = self._bind()
        # Tokens of an earlier run of this proxy (or of another app with the
        # same secret) are refused: no replay guard knows them any more.
        self._not_before = max(math.ceil(time.time()), self._not_before + 1)
        try:
            await self._spawn()
        except BaseException:
            await self._close()
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="corral-stream-proxy-supervisor")
        self._supervisor.add_done_callback(_log_crash)
        logger.info("stream proxy serving on %s:%d", self._settings.stream_host, self.port)

    async def stop(self) -> None:
        """Stop the proxy process and every open stream, then release the port.

        SIGTERM to the whole process group, SIGKILL after STOP_TIMEOUT seconds.
        Safe to call when not started, and more than once.
        """
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._close()

    # -- process lifecycle --------------------------------------------------

    def _require_listener(self) -> socket.socket:
        if self._listener is None:
            raise ProxyNotRunningError()
        return self._listener

    def _check_secret_file(self) -> None:
        path = self._settings.secret_path
        try:
            on_disk = path.read_bytes()
        except OSError as exc:
            raise ProxyStartError(f"cannot read the signing secret {path}: {exc.strerror}") from exc
        if not hmac.compare_digest(on_disk, self._secret):
            raise ProxyStartError(f"the signing secret in {path} is not the one given to StreamProxy")

    def _bind(self) -> socket.socket:
        host = self._settings.stream_host
        try:
            loopback = ipaddress.IPv4Address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ProxyStartError(
                f"stream_host must be an IPv4 loopback address such as 127.0.0.1, not {host!r}"
            )
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, self._settings.stream_port))
            listener.listen(128)
        except OSError as exc:
            listener.close()
            raise ProxyStartError(
                f"cannot listen on {host}:{self._settings.stream_port}: {exc.strerror}; "
                "set CORRAL_STREAM_PORT to a free port, or 0 to pick one"
            ) from exc
        return listener

    async def _spawn(self) -> None:
        """Start one proxy process on the listener and wait for its ready line."""
        listener = self._require_listener()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_IMPORT_ROOT), env.get("PYTHONPATH")]))
        self._ready = False
        self._stderr_tail.clear()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "backend.stream.relay",
                f"--listen-fd={listener.fileno()}",
                f"--secret-file={self._settings.secret_path}",
                f"--runtime-dir={self._settings.runtime_dir}",
                f"--log-file={self.log_path}",
                f"--parent-pid={os.getpid()}",
                f"--token-ttl={self._token_ttl}",
                f"--not-before={self._not_before}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(listener.fileno(),),
                # Its own process group: stop() signals the group, so nothing it
                # might start outlives it, and a Ctrl+C in a terminal reaches
                # the app, which then stops the proxy in order.
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            raise ProxyStartError(f"cannot start the stream proxy: {exc}") from exc
        self._process = process
        assert process.stdout is not None
        assert process.stderr is not None
        task = asyncio.create_task(
            self._forward_stderr(process.stderr), name=f"corral-stream-proxy-stderr-{process.pid}"
        )
        self._stderr_tasks.add(task)
        task.add_done_callback(self._stderr_tasks.discard)
        expected = ready_line(self.port)
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            await self._terminate(process)
            raise ProxyStartError(
                f"the stream proxy did not become ready within {START_TIMEOUT:.0f} s"
            ) from None
        if line != expected:
            await self._terminate(process)
            await asyncio.wait([task], timeout=1.0)  # its last words explain the failure
            detail = self._stderr_tail[-1] if self._stderr_tail else f"exit code {process.returncode}"
            raise ProxyStartError(f"the stream proxy failed to start: {detail}")
        self._ready = True

    async def _supervise(self) -> None:
        """Restart the proxy process whenever it exits; backoff while it keeps dying."""
        delay = RESTART_DELAY
        while True:
            process = self._process
            assert process is not None
            started = time.monotonic()
            code = await process.wait()
            self._ready = False
            self._cut_tokens_of(process)
            # Whatever is left in its process group goes too; the restarted
            # proxy starts from a clean slate.
            await self._terminate(process)
            if time.monotonic() - started >= STABLE_AFTER:
                delay = RESTART_DELAY
            logger.error("stream proxy exited unexpectedly (code %s); restarting in %.1f s", code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_DELAY_MAX)
            try:
                await self._spawn()
            except ProxyStartError as exc:
                logger.error("stream proxy restart failed: %s", exc)

    def _cut_tokens_of(self, process: asyncio.subprocess.Process) -> None:
        """Once *process* has exited: the next relay refuses every token signed before now."""
        if self._cut_for != process.pid:
            self._cut_for = process.pid
            # Past every second a token was signed in so far, including the
            # cut before this one (tokens are signed no earlier than it).
            self._not_before = max(math.ceil(time.time()), self._not_before + 1)

    async def _forward_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            self._stderr_tail.append(text)
            logger.warning("stream proxy: %s", text)

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        """End *process* and its process group: SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        group = process.pid  # start_new_session: the group id is the leader's pid
        if process.returncode is None:
            _signal_group(group, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                _signal_group(group, signal.SIGKILL)
                await process.wait()
        else:
            _signal_group(group, signal.SIGTERM)
        # Other members of the group are not our children, so poll for it to empty.
        deadline = time.monotonic() + STOP_TIMEOUT
        while await asyncio.to_thread(_group_alive, group):
            if time.monotonic() > deadline:
                _signal_group(group, signal.SIGKILL)
                break
            await asyncio.sleep(0.02)

    async def _close(self) -> None:
        self._ready = False
        if self._process is not None:
            await self._terminate(self._process)
            self._process = None
        if self._stderr_tasks:
            # The pipes reach EOF once the process group is gone.
            _, pending = await asyncio.wait(set(self._stderr_tasks), timeout=1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("%s crashed; the stream proxy is no longer supervised", task.get_name(), exc_info=exc)


def _signal_group(group: int, signum: int) -> None:
    """Send *signum* to process group *group*, if it still has members."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    """True while a process of *group* runs. Blocks (reads /proc); call in a thread.

    Zombies do not count: orphans of the group are reaped by init, which
    may take its time (or never come, in some containers).
    """
    if not os.path.isdir("/proc"):
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(os.path.join(entry.path, "stat"), "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; fields after the
        # last ")" are: state ppid pgrp ...
        fields = stat.rsplit(b")", 1)[1].split()
        if int(fields[2]) == group and fields[0] != b"Z":
            return True
    return False
