"""The credential file and session-token formats the agent shares with the hub (agent.protocol)."""

from __future__ import annotations

import json

import pytest

from agent.__main__ import DEFAULT_CREDENTIAL
from agent.protocol import ProtocolError, decode_credential, encode_credential, session_token
from backend.config.paths import AGENT_CREDENTIAL, CONTAINER_RUN_DIR

KEY = bytes(range(32))
KEY_TEXT = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"


def test_credential_file_is_one_json_object() -> None:
    data = encode_credential("dev1", KEY, 20.0)
    assert json.loads(data) == {"version": 1, "device_id": "dev1", "key": KEY_TEXT, "session_ttl": 20.0}
    credential = decode_credential(data)
    assert (credential.device_id, credential.key_bytes, credential.session_ttl) == ("dev1", KEY, 20.0)


def test_session_token_matches_the_documented_format() -> None:
    credential = decode_credential(encode_credential("dev1", KEY, 60.0))
    token = session_token(credential, now=1_700_000_000.4, nonce="nonce-nonce-nonce-1")
    # HMAC-SHA256(key, "s1.dev1.1700000060.nonce-nonce-nonce-1"), computed with hmac by hand.
    assert token == "s1.dev1.1700000060.nonce-nonce-nonce-1.rHKL0YIgb3utwhDg4DDpY_CqS-qJb5VxIzlrAOYk1LI"


def test_each_session_token_is_new() -> None:
    credential = decode_credential(encode_credential("dev1", KEY, 60.0))
    assert session_token(credential) != session_token(credential)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"{}",
        json.dumps({"version": 2, "device_id": "dev1", "key": KEY_TEXT, "session_ttl": 60}).encode(),
        json.dumps({"version": 1, "device_id": "Dev/1", "key": KEY_TEXT, "session_ttl": 60}).encode(),
        json.dumps({"version": 1, "device_id": "dev1", "key": "short", "session_ttl": 60}).encode(),
        json.dumps({"version": 1, "device_id": "dev1", "key": KEY_TEXT + "!", "session_ttl": 60}).encode(),
        json.dumps({"version": 1, "device_id": "dev1", "key": KEY_TEXT, "session_ttl": 0}).encode(),
        json.dumps({"version": 1, "device_id": "dev1", "key": KEY_TEXT, "session_ttl": 60, "x": 1}).encode(),
        b"\xff\xfe",
    ],
    ids=[
        "empty",
        "text",
        "no-fields",
        "version",
        "device-id",
        "short-key",
        "bad-key",
        "ttl",
        "extra",
        "bytes",
    ],
)
def test_anything_else_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_credential(data)
    assert info.value.code == "bad_credential"


def test_the_agent_looks_where_the_host_writes() -> None:
    assert DEFAULT_CREDENTIAL == "/run/corral/agent.cred"
    assert f"{CONTAINER_RUN_DIR}/{AGENT_CREDENTIAL}" == DEFAULT_CREDENTIAL
