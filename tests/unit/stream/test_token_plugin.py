"""The token plugin: which tokens open which socket, and which open none."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from pathlib import Path

import pytest

from backend.auth.tokens import load_or_create_secret, sign
from backend.config import Settings
from backend.stream.token_plugin import UNIX_TARGET, PluginSource, StreamTokenPlugin


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(runtime_dir=tmp_path / "run", data_dir=tmp_path / "data")


@pytest.fixture
def secret(settings: Settings) -> bytes:
    return load_or_create_secret(settings.secret_path)


@pytest.fixture
def plugin(settings: Settings, secret: bytes) -> StreamTokenPlugin:
    return StreamTokenPlugin(PluginSource.for_settings(settings).encode())


def _signed(secret: bytes, body: str) -> str:
    """A correctly signed token around an arbitrary body, bypassing sign()'s checks."""
    digest = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def test_valid_token_opens_its_devices_vnc_socket(
    plugin: StreamTokenPlugin, settings: Settings, secret: bytes
) -> None:
    token = sign(secret, "view", "dev-1", 60)
    assert plugin.lookup(token) == (UNIX_TARGET, str(settings.device_dir("dev-1") / "vnc.sock"))


def test_each_token_opens_only_the_device_it_names(plugin: StreamTokenPlugin, secret: bytes) -> None:
    first = plugin.lookup(sign(secret, "view", "dev-1", 60))
    second = plugin.lookup(sign(secret, "view", "dev-2", 60))
    assert first is not None
    assert second is not None
    assert Path(first[1]).parent.name == "dev-1"
    assert Path(second[1]).parent.name == "dev-2"


@pytest.mark.parametrize("token", ["", None, "garbage", "v2.view.dev-1", "v2.view.dev-1.9999999999."])
def test_missing_or_malformed_token_is_refused(plugin: StreamTokenPlugin, token: str | None) -> None:
    assert plugin.lookup(token) is None


def test_expired_token_is_refused(plugin: StreamTokenPlugin, secret: bytes) -> None:
    assert plugin.lookup(sign(secret, "view", "dev-1", -1)) is None


def test_forged_signature_is_refused(plugin: StreamTokenPlugin, secret: bytes) -> None:
    token = sign(secret, "view", "dev-1", 60)
    flipped = "A" if token[-1] != "A" else "B"
    assert plugin.lookup(token[:-1] + flipped) is None


def test_token_signed_with_another_secret_is_refused(plugin: StreamTokenPlugin) -> None:
    assert plugin.lookup(sign(b"x" * 32, "view", "dev-1", 60)) is None


def test_agent_token_does_not_open_a_stream(plugin: StreamTokenPlugin, secret: bytes) -> None:
    assert plugin.lookup(sign(secret, "agent", "dev-1", 60)) is None


@pytest.mark.parametrize("device_id", ["..", "../../etc", "dev_1", "Dev-1", "-dev", "dev/1", "dev%2f1"])
def test_signed_token_with_a_bad_device_id_is_refused(
    plugin: StreamTokenPlugin, secret: bytes, device_id: str
) -> None:
    # Even a correctly signed token must not name a path outside the devices root.
    token = _signed(secret, f"v2.view.{device_id}.{int(time.time()) + 60}.{'n' * 22}")
    assert plugin.lookup(token) is None


def test_refusals_are_logged_without_the_token(
    plugin: StreamTokenPlugin, secret: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    token = sign(secret, "view", "dev-1", -1)
    with caplog.at_level(logging.WARNING, logger="backend.stream.token_plugin"):
        plugin.lookup(token)
    assert "expired" in caplog.text
    assert token.rsplit(".", 1)[1] not in caplog.text


def test_source_round_trips_paths_with_colons_and_quotes() -> None:
    source = PluginSource(Path('/tmp/a:b/"s".key'), Path("/run/x:y/devices"))
    assert PluginSource.decode(source.encode()) == source


@pytest.mark.parametrize("text", ["", "/tmp/secret.key:/run", "[]", '{"secret_path": "/k"}'])
def test_bad_source_fails_at_construction(text: str) -> None:
    with pytest.raises(ValueError, match="not a stream token source"):
        StreamTokenPlugin(text)


def test_missing_secret_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        StreamTokenPlugin(PluginSource(tmp_path / "none.key", tmp_path).encode())


def test_short_secret_fails_at_construction(tmp_path: Path) -> None:
    (tmp_path / "short.key").write_bytes(b"short")
    with pytest.raises(ValueError, match="too short"):
        StreamTokenPlugin(PluginSource(tmp_path / "short.key", tmp_path).encode())
