import pytest

from backend.hub import tokens
from backend.hub.exceptions import TokenError

SECRET = b"s" * 32


def test_round_trip() -> None:
    token = tokens.sign(SECRET, "agent", "abc123", ttl=60, now=1000)
    claims = tokens.verify(SECRET, token, "agent", now=1030)
    assert claims == tokens.TokenClaims("agent", "abc123", 1060)


def test_expired() -> None:
    token = tokens.sign(SECRET, "stream", "abc123", ttl=60, now=1000)
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(SECRET, token, "stream", now=1061)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # forged signature
        lambda t: t.replace("abc123", "abc124"),  # other device
        lambda t: t.replace(".1060.", ".9999."),  # extended expiry
        lambda t: "",
        lambda t: "v1.agent.x",
        lambda t: "v2" + t[2:],
    ],
)
def test_tampered_tokens_are_refused(mutate) -> None:
    token = tokens.sign(SECRET, "agent", "abc123", ttl=60, now=1000)
    with pytest.raises(TokenError):
        tokens.verify(SECRET, mutate(token), "agent", now=1000)


def test_other_secret_is_refused() -> None:
    token = tokens.sign(SECRET, "agent", "abc123", ttl=60)
    with pytest.raises(TokenError, match="signature"):
        tokens.verify(b"t" * 32, token, "agent")


def test_purpose_is_bound() -> None:
    token = tokens.sign(SECRET, "agent", "abc123", ttl=60)
    with pytest.raises(TokenError, match="not 'stream'"):
        tokens.verify(SECRET, token, "stream")


def test_device_id_is_validated_when_signing() -> None:
    with pytest.raises(TokenError):
        tokens.sign(SECRET, "agent", "../etc", ttl=60)


def test_secret_file_is_created_private(tmp_path) -> None:
    path = tmp_path / "sub" / "secret.key"
    first = tokens.load_or_create_secret(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert tokens.load_or_create_secret(path) == first
    path.write_bytes(b"short")
    with pytest.raises(TokenError, match="too short"):
        tokens.load_or_create_secret(path)
