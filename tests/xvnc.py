"""Fake devices for tests and benchmarks: host TigerVNC Xvnc displays (optionally running Chromium).

Each source is laid out like a real device's runtime directory
(``<root>/devices/<id>/vnc.sock``, a unix socket only, no TCP), so the stream
proxy can serve it exactly as it serves a container.

Needs ``/usr/bin/Xvnc`` (tigervnc-standalone-server) and ``/usr/bin/chromium``.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CHROMIUM", "XVNC", "XProbe", "XvncSource", "colour_page", "start_xvnc", "start_xvnc_source"]

XVNC = "/usr/bin/Xvnc"
CHROMIUM = "/usr/bin/chromium"

_DISPLAY_BASE = 300
_DISPLAY_SPAN = 600

_CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--kiosk",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-extensions",
    "--disable-sync",
    "--disable-features=Translate,MediaRouter",
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--password-store=basic",
    "--mute-audio",
    "--noerrdialogs",
)


def colour_page(name: str, colour: str) -> str:
    """A still page: one flat colour with the device name in big letters."""
    return (
        f"<body style='margin:0;background:{colour};color:white;font:bold 64px sans-serif;"
        f"display:flex;align-items:center;justify-content:center;height:100vh'>{name}</body>"
    )


@dataclass
class XvncSource:
    """One running fake device. ``stop()`` ends its processes and removes its files."""

    device_id: str
    display: int
    socket_path: Path
    width: int
    height: int
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    _files: list[Path] = field(default_factory=list, repr=False)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def stop(self) -> None:
        # Chromium first (it is a client of the X server), each in its own session.
        for process in reversed(self._processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self._processes):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self._processes.clear()
        for path in self._files:
            shutil.rmtree(path, ignore_errors=True)
        self._files.clear()


def start_xvnc_source(
    root: Path,
    device_id: str,
    html: str,
    width: int = 640,
    height: int = 480,
    timeout: float = 10.0,
    nice: int = 0,
    client: Sequence[str] = (),
) -> XvncSource:
    """Start Xvnc on a free display with *html* shown full screen by Chromium.

    With *client* (a command line), that X client runs on the display instead of
    Chromium and *html* is ignored. Returns once the VNC socket exists; the
    client may still be painting its first frame. *nice* lowers the priority of
    both (benchmarks: devices yield to the viewer). Raises RuntimeError when Xvnc
    does not come up within *timeout*.
    """
    prefix = ("nice", "-n", str(nice)) if nice else ()
    device_dir = root / "devices" / device_id
    device_dir.mkdir(parents=True, mode=0o700)
    socket_path = device_dir / "vnc.sock"
    source = XvncSource(device_id, -1, socket_path, width, height, [], [device_dir])
    try:
        source.display, xvnc = start_xvnc(socket_path, width, height, timeout, prefix)
        source._processes.append(xvnc)
        if client:
            command = list(client)
        else:
            profile = root / f"chromium-{device_id}"
            source._files.append(profile)
            command = [
                CHROMIUM,
                *_CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "--window-position=0,0",
                "data:text/html;charset=utf-8," + urllib.parse.quote(html),
            ]
        env = {**os.environ, "DISPLAY": f":{source.display}"}
        env.pop("WAYLAND_DISPLAY", None)
        process = subprocess.Popen(
            [*prefix, *command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        source._processes.append(process)
    except BaseException:
        source.stop()
        raise
    return source


def start_xvnc(
    socket_path: Path, width: int, height: int, timeout: float = 10.0, prefix: tuple[str, ...] = ()
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start Xvnc on the first free display from a random start; retry when one is taken.

    Xvnc's own ``-displayfd`` allocation does not see displays taken by servers
    started with ``-nolisten local`` at the same moment, so pick explicitly.
    """
    deadline = time.monotonic() + timeout
    display = _DISPLAY_BASE + random.randrange(_DISPLAY_SPAN)
    while time.monotonic() < deadline:
        display = _DISPLAY_BASE + (display - _DISPLAY_BASE + 1) % _DISPLAY_SPAN
        if Path(f"/tmp/.X{display}-lock").exists() or Path(f"/tmp/.X11-unix/X{display}").exists():
            continue
        xvnc = subprocess.Popen(
            [
                *prefix,
                XVNC,
                f":{display}",
                "-rfbunixpath",
                str(socket_path),
                "-rfbport",
                "-1",
                "-nolisten",
                "tcp",
                "-nolisten",
                "local",
                "-SecurityTypes",
                "None",
                "-geometry",
                f"{width}x{height}",
                "-depth",
                "24",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while xvnc.poll() is None and time.monotonic() < deadline:
            if socket_path.exists() and Path(f"/tmp/.X11-unix/X{display}").exists():
                return display, xvnc
            time.sleep(0.02)
        if xvnc.poll() is None:
            os.killpg(xvnc.pid, signal.SIGKILL)
        xvnc.wait()
    raise RuntimeError(f"Xvnc did not start within {timeout} s")


class XProbe:
    """Reads what input reached an X display, through libX11 (no xdotool needed).

    ``pointer()`` is the pointer's root position, ``key_down(keysym)`` whether
    that key is held, ``selection_owner(name)`` the window owning a selection
    (0 for none): a VNC server that got a ClientCutText takes the clipboard.
    """

    def __init__(self, display: int) -> None:
        import ctypes
        import ctypes.util

        self._ctypes = ctypes
        lib = ctypes.util.find_library("X11")
        if lib is None:
            raise RuntimeError("libX11 is not installed (apt install libx11-6)")
        self._x = ctypes.CDLL(lib)
        self._x.XOpenDisplay.restype = ctypes.c_void_p
        self._x.XOpenDisplay.argtypes = [ctypes.c_char_p]
        self._x.XDefaultRootWindow.restype = ctypes.c_ulong
        self._x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        self._x.XInternAtom.restype = ctypes.c_ulong
        self._x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self._x.XGetSelectionOwner.restype = ctypes.c_ulong
        self._x.XGetSelectionOwner.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        self._x.XKeysymToKeycode.restype = ctypes.c_ubyte
        self._x.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        self._x.XQueryKeymap.argtypes = [ctypes.c_void_p, ctypes.c_char * 32]
        self._x.XCloseDisplay.argtypes = [ctypes.c_void_p]
        self._x.XQueryPointer.argtypes = [ctypes.c_void_p, ctypes.c_ulong] + [ctypes.c_void_p] * 7
        self._display = self._x.XOpenDisplay(f":{display}".encode())
        if not self._display:
            raise RuntimeError(f"cannot open X display :{display}")
        # Xlib exits the process when the server goes away, unless an exit
        # handler returns instead: a dead Xvnc must fail a test, not end the run.
        self._lost = False
        handler_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
        self._on_lost = handler_type(self._lost_server)
        self._x.XSetIOErrorExitHandler.argtypes = [ctypes.c_void_p, handler_type, ctypes.c_void_p]
        self._x.XSetIOErrorExitHandler(self._display, self._on_lost, None)
        # The default I/O error handler prints and exits by itself; this one only returns.
        io_handler_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
        self._on_io_error = io_handler_type(lambda _display: 0)
        self._x.XSetIOErrorHandler.argtypes = [io_handler_type]
        self._x.XSetIOErrorHandler(self._on_io_error)

    def _lost_server(self, _display: int, _data: int) -> None:
        self._lost = True

    def _check(self) -> None:
        if self._lost:
            raise RuntimeError("the X server went away")

    def pointer(self) -> tuple[int, int]:
        c = self._ctypes
        root, child = c.c_ulong(), c.c_ulong()
        root_x, root_y, win_x, win_y, mask = c.c_int(), c.c_int(), c.c_int(), c.c_int(), c.c_uint()
        self._x.XQueryPointer(
            self._display,
            self._x.XDefaultRootWindow(self._display),
            *(c.byref(v) for v in (root, child, root_x, root_y, win_x, win_y, mask)),
        )
        self._check()
        return root_x.value, root_y.value

    def key_down(self, keysym: int) -> bool:
        keycode = self._x.XKeysymToKeycode(self._display, keysym)
        keys = (self._ctypes.c_char * 32)()
        self._x.XQueryKeymap(self._display, keys)
        self._check()
        return bool(keys.raw[keycode // 8] >> (keycode % 8) & 1)

    def selection_owner(self, name: str) -> int:
        atom = self._x.XInternAtom(self._display, name.encode(), 0)
        owner = int(self._x.XGetSelectionOwner(self._display, atom))
        self._check()
        return owner

    def close(self) -> None:
        if self._display and not self._lost:
            self._x.XCloseDisplay(self._display)
            self._display = None
