"""A farm of fake devices behind the real stream proxy, for GUI tests and benchmarks.

The proxy (``backend.stream.StreamProxy``) runs on its own asyncio loop in a
thread, so it serves streams no matter what the Qt thread is doing (tests block
it in ``qtbot.waitUntil``). Sources live where the proxy looks for devices:
``settings.runtime_dir / "devices" / <id> / vnc.sock``.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from backend.api import StreamScope
from backend.auth.tokens import load_or_create_secret
from backend.config import Settings
from backend.stream import StreamProxy
from tests.xvnc import XvncSource, start_xvnc_source

__all__ = ["StreamFarm"]

T = TypeVar("T")


class StreamFarm:
    """Start with ``start()``; ``add()`` devices; ``stop()`` ends everything it started."""

    def __init__(self) -> None:
        # Short: unix socket paths must stay under 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="cgf-", dir="/tmp"))
        self.settings = Settings(
            data_dir=self.root / "data",
            runtime_dir=self.root / "run",
            database_url="postgresql+asyncpg://unused",
        )
        self.sources: dict[str, XvncSource] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stream-farm", daemon=True)
        self._proxy: StreamProxy | None = None

    def start(self) -> StreamFarm:
        self._thread.start()
        secret = load_or_create_secret(self.settings.secret_path)
        self._proxy = StreamProxy(self.settings, secret)
        self._run(self._proxy.start())
        return self

    def add(
        self,
        device_id: str,
        html: str,
        width: int = 640,
        height: int = 480,
        nice: int = 0,
        client: Sequence[str] = (),
    ) -> XvncSource:
        """A source showing *html* in Chromium, or running the X client *client* instead."""
        source = start_xvnc_source(
            self.settings.runtime_dir, device_id, html, width, height, nice=nice, client=client
        )
        self.sources[device_id] = source
        return source

    def add_many(
        self,
        pages: dict[str, str],
        width: int = 640,
        height: int = 480,
        nice: int = 0,
        client: Sequence[str] = (),
    ) -> list[XvncSource]:
        """Start several sources in parallel (Chromium takes a while to start)."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [
                pool.submit(self.add, name, html, width, height, nice, client) for name, html in pages.items()
            ]
            return [future.result() for future in futures]

    def remove(self, device_id: str) -> None:
        source = self.sources.pop(device_id, None)
        if source is not None:
            source.stop()

    def pane_url(self, device_id: str, scope: StreamScope = "view") -> str:
        assert self._proxy is not None, "start() first"
        return self._proxy.pane_url(device_id, scope)

    def stop(self) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda source: source.stop(), self.sources.values()))
        self.sources.clear()
        if self._proxy is not None:
            self._run(self._proxy.stop())
            self._proxy = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)
