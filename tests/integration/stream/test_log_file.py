"""The real proxy keeps its log private: a 0700 logs directory and a 0600 file, old ones tightened."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from backend.auth.tokens import load_or_create_secret
from backend.config import Settings
from backend.stream import ProxyStartError, StreamProxy
from tests.integration.stream.devices import Farm

TIMEOUT = 10.0


def _settings(farm: Farm, data_dir: Path) -> tuple[Settings, bytes]:
    settings = Settings(runtime_dir=farm.settings.runtime_dir, data_dir=data_dir)
    return settings, load_or_create_secret(settings.secret_path)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


async def _refused_and_logged(proxy: StreamProxy) -> None:
    """Make the relay log one refusal and wait until it is in the file."""
    with pytest.raises(InvalidStatus):
        await connect(f"ws://127.0.0.1:{proxy.port}/devices/dev-a?token=forged", open_timeout=TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while "refused a stream connection" not in proxy.log_path.read_text():
        assert time.monotonic() < deadline, "the relay never logged the refusal"
        await asyncio.sleep(0.02)


async def test_a_new_log_is_private(farm: Farm, tmp_path: Path) -> None:
    settings, secret = _settings(farm, tmp_path / "data")
    proxy = StreamProxy(settings, secret)
    await proxy.start()
    try:
        await _refused_and_logged(proxy)
    finally:
        await proxy.stop()
    assert proxy.log_path == tmp_path / "data" / "logs" / "stream-proxy.log"
    assert _mode(tmp_path / "data" / "logs") == 0o700
    assert _mode(proxy.log_path) == 0o600


async def test_an_earlier_versions_readable_log_is_tightened_and_kept(farm: Farm, tmp_path: Path) -> None:
    settings, secret = _settings(farm, tmp_path / "data")
    logs = tmp_path / "data" / "logs"
    logs.mkdir(mode=0o755)
    logs.chmod(0o755)
    (logs / "stream-proxy.log").write_text("an earlier run\n")
    (logs / "stream-proxy.log").chmod(0o644)
    proxy = StreamProxy(settings, secret)
    await proxy.start()
    try:
        assert _mode(logs) == 0o700
        assert _mode(logs / "stream-proxy.log") == 0o600
        await _refused_and_logged(proxy)
    finally:
        await proxy.stop()
    assert proxy.log_path.read_text().startswith("an earlier run\n")
    assert _mode(logs / "stream-proxy.log") == 0o600


async def test_a_symlinked_log_is_refused_and_its_target_untouched(farm: Farm, tmp_path: Path) -> None:
    settings, secret = _settings(farm, tmp_path / "data")
    target = tmp_path / "elsewhere.txt"
    target.write_text("not a log\n")
    target.chmod(0o644)
    logs = tmp_path / "data" / "logs"
    logs.mkdir(mode=0o700)
    (logs / "stream-proxy.log").symlink_to(target)
    proxy = StreamProxy(settings, secret)
    with pytest.raises(ProxyStartError, match="cannot keep the stream proxy log private"):
        await proxy.start()
    await proxy.stop()
    assert not proxy.running
    assert target.read_text() == "not a log\n"
    assert _mode(target) == 0o644
