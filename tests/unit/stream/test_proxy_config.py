"""StreamProxy refuses bad configurations before it starts any process."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import backend.stream
from backend.auth.tokens import load_or_create_secret
from backend.config import Settings
from backend.stream import ProxyNotRunningError, ProxyStartError, StreamError, StreamProxy


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(runtime_dir=tmp_path / "run", data_dir=tmp_path / "data", **overrides)


def test_public_api() -> None:
    assert backend.stream.__all__ == sorted(backend.stream.__all__)
    for name in backend.stream.__all__:
        assert getattr(backend.stream, name) is not None
    for name in ("ProxyStartError", "ProxyNotRunningError", "InvalidDeviceIdError"):
        assert issubclass(getattr(backend.stream, name), StreamError)


def test_errors_default_to_their_docstring() -> None:
    assert "start it first" in str(ProxyNotRunningError())


def test_not_started_proxy_has_no_port_and_no_url(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    proxy = StreamProxy(settings, load_or_create_secret(settings.secret_path))
    assert not proxy.running
    with pytest.raises(ProxyNotRunningError):
        _ = proxy.port
    with pytest.raises(ProxyNotRunningError):
        proxy.pane_url("dev-1")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::1", "localhost", ""])
async def test_only_ipv4_loopback_hosts_are_accepted(tmp_path: Path, host: str) -> None:
    # Settings refuse such a host already; the proxy checks again whatever it is given.
    with pytest.raises(ValidationError, match="loopback"):
        _settings(tmp_path, stream_host=host)
    settings = _settings(tmp_path).model_copy(update={"stream_host": host})
    proxy = StreamProxy(settings, load_or_create_secret(settings.secret_path))
    with pytest.raises(ProxyStartError, match="loopback"):
        await proxy.start()
    assert not proxy.running


async def test_secret_must_match_the_secret_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    load_or_create_secret(settings.secret_path)
    proxy = StreamProxy(settings, b"another secret, 32 bytes long.!!")
    with pytest.raises(ProxyStartError, match="not the one"):
        await proxy.start()


async def test_missing_secret_file_is_reported(tmp_path: Path) -> None:
    proxy = StreamProxy(_settings(tmp_path), b"s" * 32)
    with pytest.raises(ProxyStartError, match="cannot read the signing secret"):
        await proxy.start()


async def test_taken_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = _settings(tmp_path, stream_port=taken.getsockname()[1])
        proxy = StreamProxy(settings, load_or_create_secret(settings.secret_path))
        with pytest.raises(ProxyStartError, match="CORRAL_STREAM_PORT"):
            await proxy.start()


async def test_stop_without_start_is_harmless(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    proxy = StreamProxy(settings, load_or_create_secret(settings.secret_path))
    await proxy.stop()
    await proxy.stop()
