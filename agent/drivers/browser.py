"""The browser device's driver: the agent runs the device's Chromium through Playwright.

Chromium is Debian's ``/usr/bin/chromium`` (Playwright's ``executable_path``),
launched headed on the device's X display in kiosk mode with a persistent
profile, over Playwright's pipe transport: no remote debugging port exists, so
nothing in the container listens on TCP. The device's start page
(``file:///opt/corral/start/index.html#…``) is the first page and where
``stop_app`` returns.

Lifetime: :meth:`BrowserDriver.start` starts a supervisor task that waits for
the X display, launches Chromium and relaunches it with a backoff (0.5 s
doubling to 30 s, reset after a minute of health) whenever it exits. Meanwhile
commands fail with :class:`agent.exceptions.DeviceUnavailable` saying why; a
command in flight when Chromium dies fails at once. When
Playwright itself cannot start, the supervisor keeps retrying and the agent
still says hello and answers ``ping``. A command that finds no browser waits for one
up to its own timeout, then fails saying why there is none. Events: ``state`` when the browser
launched, crashed or could not start; ``log`` for page console errors, uncaught
exceptions and failed requests, rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from agent.commands import AgentCommand
from agent.drivers.base import Driver, EmitEvent
from agent.drivers.targets import Screen
from agent.events import RateLimit, with_suppressed
from agent.exceptions import CommandFailed, DeviceUnavailable

if TYPE_CHECKING:  # imported when used: without Playwright the agent still answers ping
    from playwright.async_api import BrowserContext, ConsoleMessage, Page, Playwright, Request

__all__ = ["CHROMIUM", "START_PAGE", "BrowserDriver", "chromium_args", "parse_screen", "start_url"]

log = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
START_PAGE = "file:///opt/corral/start/index.html"
_DEFAULT_SCREEN = "1024x768x24"
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 30.0
_HEALTHY_AFTER = 60.0
_LAUNCH_TIMEOUT = 30.0
_MAX_MESSAGE = 2000
_LOG_RATE = 5.0
"""Page log events per second and source (console, page, network, browser), on average..."""
_LOG_BURST = 50
"""...in bursts of up to this many; the next allowed event counts the skipped ones."""


def parse_screen(spec: str) -> Screen:
    """``WIDTHxHEIGHT[xDEPTH]`` (``CORRAL_SCREEN``) as a Screen. Raises ValueError."""
    match = re.fullmatch(r"(\d+)x(\d+)(?:x\d+)?", spec.strip())
    if match is None:
        raise ValueError(f"CORRAL_SCREEN must look like 1024x768x24, got {spec!r}")
    return Screen(int(match[1]), int(match[2]))


def start_url(environ: Mapping[str, str]) -> str:
    """The device's first page: ``CORRAL_START_URL`` or the baked-in start page with the device's
    id, name and the animation settings the fps benchmarks use in its fragment."""
    if environ.get("CORRAL_START_URL"):
        return environ["CORRAL_START_URL"]
    fragment = urllib.parse.urlencode(
        {
            "id": environ.get("CORRAL_DEVICE_ID", ""),
            "name": environ.get("CORRAL_DEVICE_NAME", ""),
            "animate": environ.get("CORRAL_ANIMATE", "0"),
            "fps": environ.get("CORRAL_ANIMATE_FPS", "30"),
        },
        quote_via=urllib.parse.quote,
    )
    return f"{START_PAGE}#{fragment}"


def chromium_args(screen: Screen) -> list[str]:
    """Chromium's flags besides Playwright's own.

    Playwright adds ``--no-sandbox`` (``chromium_sandbox=False``): the container
    has no capabilities, no-new-privileges and no user namespaces, so Chromium's
    own sandbox cannot start; the container is the sandbox. ``--test-type`` hides
    the infobar that warns about it. The window is one pixel larger than the
    screen: without a window manager, Chromium shrinks a window of exactly the
    screen's size by one pixel, which leaves a black line along the right and
    bottom edges.
    """
    return [
        "--kiosk",
        "--disable-gpu",
        "--disable-quic",
        "--disable-sync",
        "--noerrdialogs",
        "--hide-crash-restore-bubble",
        "--test-type",
        "--window-position=0,0",
        f"--window-size={screen.width + 1},{screen.height + 1}",
    ]


class BrowserDriver(Driver):
    """Runs the browser commands on the device's Chromium (see the module docstring)."""

    kind: ClassVar[str] = "browser"

    def __init__(
        self,
        emit: EmitEvent,
        *,
        display: str,
        screen: Screen,
        start_url: str,
        executable: str = CHROMIUM,
        user_data_dir: str = "/tmp/chrome",
    ) -> None:
        self._emit = emit
        self._display = display
        self.screen = screen
        self.start_url = start_url
        self._executable = executable
        self._user_data_dir = user_data_dir
        self._supervisor: asyncio.Task[None] | None = None
        self._playwright: Playwright | None = None
        self._context: BrowserContext | None = None
        self._unavailable = "the browser is starting"
        self._up = asyncio.Event()
        """Set while :attr:`_context` is a running browser."""
        # One bucket per source: a console flood must not hide an uncaught error or a crash.
        self._log_limits: dict[str, RateLimit] = {}
        self.launches = 0

    @classmethod
    def from_environment(cls, emit: EmitEvent, environ: Mapping[str, str] | None = None) -> BrowserDriver:
        """A driver configured from the device's environment (see the image's entrypoint.sh)."""
        env = os.environ if environ is None else environ
        return cls(
            emit,
            display=env.get("DISPLAY", ""),
            screen=parse_screen(env.get("CORRAL_SCREEN") or _DEFAULT_SCREEN),
            start_url=start_url(env),
            executable=env.get("CORRAL_CHROMIUM", CHROMIUM),
            user_data_dir=env.get("CORRAL_CHROMIUM_PROFILE", "/tmp/chrome"),
        )

    @property
    def running(self) -> bool:
        """True while Chromium is up on its start page or later, and commands can run."""
        return self._up.is_set()

    async def start(self) -> None:
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="browser-supervisor")

    async def stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        await self._close()

    async def run(self, command: AgentCommand) -> dict[str, Any]:
        from playwright.async_api import Error as PlaywrightError

        from agent.drivers.browser_actions import ACTIONS, Where

        if command.name == "ping":
            return {"pong": time.time()}
        action = ACTIONS.get(command.name)
        if action is None:
            raise CommandFailed(f"{command.name}: not supported on browser devices")
        context = await self._running_context(command)
        try:
            page = await self._page(context, command.timeout)
            return await action(page, command, Where(context, self.screen, self.start_url))
        except PlaywrightError as exc:
            if self._context is not context or "closed" in (exc.message or ""):
                raise DeviceUnavailable(f"{command.name}: the browser closed during the command") from exc
            raise CommandFailed(f"{command.name}: {(exc.message or str(exc)).splitlines()[0]}") from exc

    async def _running_context(self, command: AgentCommand) -> BrowserContext:
        """The browser's context, waiting for a launch under way up to the command's timeout."""
        # Not _context: it is set before the start page has loaded, and a command's
        # navigation would interrupt that one.
        if not self._up.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), command.timeout)
        context = self._context
        if context is None or not self._up.is_set():
            raise DeviceUnavailable(
                f"{command.name}: the browser was not running within {command.timeout:g}s:"
                f" {self._unavailable}"
            )
        return context

    async def _page(self, context: BrowserContext, timeout: float) -> Page:
        """The page commands act on: the newest open one, or a new one on the start page."""
        pages = [page for page in context.pages if not page.is_closed()]
        if pages:
            return pages[-1]
        page = await context.new_page()
        await page.goto(self.start_url, timeout=timeout * 1000)
        return page

    # --- lifetime --------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = _FIRST_BACKOFF
        while True:
            started = time.monotonic()
            try:
                # Playwright's driver starts while the X server comes up.
                await self._start_playwright()
                await self._wait_for_display()
                closed = await self._launch()
            except _LaunchFailed as exc:
                self._unavailable = f"the browser could not start ({exc}); retrying in {delay:g}s"
                log.error("%s", self._unavailable)
                self._emit("state", {"browser": "failed", "error": str(exc), "retry_in": delay})
                await self._close()
                await asyncio.sleep(delay)
                delay = min(_MAX_BACKOFF, delay * 2)
                continue
            self.launches += 1
            took = round(time.monotonic() - started, 3)
            log.info("browser launched in %.2fs (launch %d)", took, self.launches)
            self._emit(
                "state", {"browser": "launched" if self.launches == 1 else "relaunched", "seconds": took}
            )
            await closed.wait()
            lived = time.monotonic() - started
            self._up.clear()
            self._context = None
            if lived > _HEALTHY_AFTER:
                delay = _FIRST_BACKOFF
            self._unavailable = f"the browser exited and is being relaunched (next attempt in {delay:g}s)"
            log.error("browser exited after %.1fs; relaunching in %gs", lived, delay)
            self._emit("state", {"browser": "crashed", "lived_seconds": round(lived, 1), "retry_in": delay})
            await self._close()
            await asyncio.sleep(delay)
            delay = min(_MAX_BACKOFF, delay * 2)

    async def _wait_for_display(self) -> None:
        """Wait until the X server accepts connections (the agent starts before Xvnc; a socket
        file left by an earlier run of the container may exist before the server listens)."""
        match = re.fullmatch(r":(\d+)(?:\.\d+)?", self._display)
        if match is None:
            return  # not a local display: let Chromium say what is wrong
        socket_path = f"/tmp/.X11-unix/X{match[1]}"
        while True:
            try:
                _reader, writer = await asyncio.open_unix_connection(socket_path)
            except OSError:
                self._unavailable = f"the browser is waiting for the display {self._display}"
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def _start_playwright(self) -> None:
        """Start Playwright's driver process unless it runs. Raises _LaunchFailed."""
        if self._playwright is not None:
            return
        try:
            from playwright.async_api import async_playwright
        except ImportError as exc:
            raise _LaunchFailed(f"Playwright is not installed: {exc}") from exc
        try:
            # Bounded: when Playwright's node driver dies at start, start() never returns.
            self._playwright = await asyncio.wait_for(async_playwright().start(), _LAUNCH_TIMEOUT)
        except TimeoutError as exc:
            raise _LaunchFailed(f"Playwright did not start within {_LAUNCH_TIMEOUT:g}s") from exc
        except OSError as exc:
            raise _LaunchFailed(f"Playwright did not start: {exc}") from exc

    async def _launch(self) -> asyncio.Event:
        """Launch Chromium (Playwright runs); return an event set when it closes. Raises _LaunchFailed."""
        from playwright.async_api import Error as PlaywrightError

        assert self._playwright is not None  # _start_playwright came first
        try:
            self._context = await self._playwright.chromium.launch_persistent_context(
                self._user_data_dir,
                executable_path=self._executable,
                headless=False,
                no_viewport=True,
                args=chromium_args(self.screen),
                ignore_default_args=["--enable-automation"],
                env={**os.environ, "DISPLAY": self._display},
                timeout=_LAUNCH_TIMEOUT * 1000,
                handle_sigint=False,
                handle_sigterm=False,
                handle_sighup=False,
            )
        except (PlaywrightError, OSError) as exc:
            raise _LaunchFailed(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)) from exc
        context = self._context
        closed = asyncio.Event()
        context.on("close", lambda _context: closed.set())
        context.on("page", self._watch_page)
        for page in context.pages:
            self._watch_page(page)
        try:
            page = await self._page(context, _LAUNCH_TIMEOUT)
            await page.goto(self.start_url, timeout=_LAUNCH_TIMEOUT * 1000)
        except PlaywrightError as exc:
            # The browser runs; a start page that does not load is the page's problem, not a crash.
            self._log_event("error", "agent", f"the start page did not load: {exc.message}")
        self._unavailable = "the browser is not running"
        self._up.set()
        return closed

    async def _close(self) -> None:
        self._up.clear()
        context, self._context = self._context, None
        playwright, self._playwright = self._playwright, None
        if context is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(context.close(), 5)
        if playwright is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(playwright.stop(), 5)

    # --- page events -----------------------------------------------------------------

    def _watch_page(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on(
            "pageerror", lambda error: self._log_event("error", "page", f"uncaught: {error}", url=page.url)
        )
        page.on("requestfailed", self._on_request_failed)
        page.on("crash", lambda _page: self._log_event("error", "browser", "the page crashed", url=page.url))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self._log_event(message.type, "console", message.text, url=message.location.get("url", ""))

    def _on_request_failed(self, request: Request) -> None:
        if request.failure == "net::ERR_ABORTED":
            return  # a navigation left the page before it finished: normal, not worth an event
        self._log_event("warning", "network", f"request failed: {request.failure}", url=request.url)

    def _log_event(self, level: str, source: str, message: str, **extra: str) -> None:
        limit = self._log_limits.setdefault(source, RateLimit(rate=_LOG_RATE, burst=_LOG_BURST))
        if not limit.allow():
            return
        data = {
            "level": level,
            "source": source,
            "message": message[:_MAX_MESSAGE],
            **{key: value[:_MAX_MESSAGE] for key, value in extra.items()},
        }
        self._emit("log", with_suppressed(data, limit))


class _LaunchFailed(Exception):
    """Playwright or Chromium did not start."""
