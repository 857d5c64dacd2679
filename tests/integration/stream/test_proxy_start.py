"""StreamProxy.start() failures leave nothing running and say what went wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from backend.stream import ProxyStartError, StreamProxy
from backend.stream import proxy as proxy_module
from tests.integration.stream.devices import Farm


async def test_process_that_never_gets_ready_is_reported_and_stopped(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxy_module, "START_TIMEOUT", 0.001)
    proxy = StreamProxy(farm.settings, farm.secret)
    with pytest.raises(ProxyStartError, match="did not become ready"):
        await proxy.start()
    assert not proxy.running
    await proxy.stop()


async def test_process_that_fails_reports_its_last_words(
    farm: Farm, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    failing = tmp_path / "python"
    failing.write_text("#!/bin/sh\necho 'cannot import websockets' >&2\nexit 3\n")
    failing.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(failing))
    proxy = StreamProxy(farm.settings, farm.secret)
    with pytest.raises(ProxyStartError, match="cannot import websockets"):
        await proxy.start()
    assert not proxy.running
