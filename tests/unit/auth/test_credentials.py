"""The host's side of agent credentials: rotation, revocation, session-token checks."""

from __future__ import annotations

import pytest

from agent.protocol import decode_credential, encode_credential, session_token
from backend.auth.credentials import DeviceCredentials
from backend.auth.exceptions import TokenError

NOW = 1_700_000_000.0
KEY = bytes(range(32))


def _issued(registry: DeviceCredentials, device_id: str = "dev1") -> bytes:
    key, data = registry.new_file(device_id)
    registry.install(device_id, key)
    return data


def _token(data: bytes, *, now: float = NOW, nonce: str | None = None) -> str:
    return session_token(decode_credential(data), now=now, nonce=nonce)


def _with_ttl(data: bytes, ttl: float) -> bytes:
    """The same key with another TTL: what a tampering agent could write."""
    return encode_credential("dev1", decode_credential(data).key_bytes, ttl)


def test_a_fresh_token_is_admitted_once() -> None:
    registry = DeviceCredentials(session_ttl=20)
    token = _token(_issued(registry), nonce="n" * 16)
    claims = registry.verify("dev1", token, now=NOW + 1)
    assert (claims.device_id, claims.expires, claims.nonce) == ("dev1", 1_700_000_020, "n" * 16)
    with pytest.raises(TokenError, match="already used"):
        registry.verify("dev1", token, now=NOW + 2)


def test_the_file_carries_the_session_ttl() -> None:
    registry = DeviceCredentials(session_ttl=20)
    assert decode_credential(_issued(registry)).session_ttl == 20.0


def test_new_file_changes_nothing_until_installed() -> None:
    registry = DeviceCredentials(session_ttl=20)
    old = _issued(registry)
    registry.new_file("dev1")
    registry.verify("dev1", _token(old), now=NOW)


def test_rotation_refuses_the_old_credential() -> None:
    registry = DeviceCredentials(session_ttl=20)
    old = _issued(registry)
    new = _issued(registry)
    with pytest.raises(TokenError, match="rotated"):
        registry.verify("dev1", _token(old), now=NOW)
    registry.verify("dev1", _token(new), now=NOW)


def test_revocation_refuses_every_token() -> None:
    registry = DeviceCredentials(session_ttl=20)
    data = _issued(registry)
    registry.revoke("dev1")
    assert "dev1" not in registry
    with pytest.raises(TokenError, match="has no credential"):
        registry.verify("dev1", _token(data), now=NOW)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda data: "", "malformed"),
        (lambda data: "v2.agent.dev1.1.nonce.sig", "malformed"),
        (lambda data: _token(data, now=NOW - 30), "expired"),
        (lambda data: _token(_with_ttl(data, 3600), now=NOW), "lives longer"),
        (lambda data: _token(encode_credential("dev1", KEY, 20), now=NOW), "signature"),
        (lambda data: _token(encode_credential("dev2", KEY, 20), now=NOW), "for device 'dev2'"),
        (lambda data: _token(data).rsplit(".", 1)[0] + ".AAAA", "signature"),
    ],
    ids=["empty", "other-format", "expired", "too-long", "forged", "other-device", "bad-signature"],
)
def test_bad_tokens_say_why(make, message: str) -> None:
    registry = DeviceCredentials(session_ttl=20)
    data = _issued(registry)
    with pytest.raises(TokenError, match=message):
        registry.verify("dev1", make(data), now=NOW)


def test_a_token_of_one_device_does_not_open_another() -> None:
    registry = DeviceCredentials(session_ttl=20)
    one = _issued(registry, "dev1")
    _issued(registry, "dev2")
    with pytest.raises(TokenError, match="for device 'dev1', not 'dev2'"):
        registry.verify("dev2", _token(one), now=NOW)
