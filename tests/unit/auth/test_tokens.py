import pytest

from backend.auth import tokens
from backend.auth.exceptions import TokenError

SECRET = b"s" * 32


def test_round_trip() -> None:
    token = tokens.sign(SECRET, "agent", "abc123", ttl=60, now=1000, nonce="n" * 22)
    assert token.startswith("v2.agent.abc123.1060." + "n" * 22 + ".")
    claims = tokens.verify(SECRET, token, "agent", now=1030)
    assert claims == tokens.TokenClaims("agent", "abc123", 1060, "n" * 22)


def test_expired() -> None:
    token = tokens.sign(SECRET, "view", "abc123", ttl=60, now=1000)
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(SECRET, token, "view", now=1061)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # forged signature
        lambda t: t.replace("abc123", "abc124"),  # other device
        lambda t: t.replace(".1060.", ".9999."),  # extended expiry
        lambda t: "",
        lambda t: "v2.agent.x",
        lambda t: "v1" + t[2:],
        lambda t: t.replace(".agent.", ".control."),  # other purpose, same signature
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
    with pytest.raises(TokenError, match="not 'view'"):
        tokens.verify(SECRET, token, "view")


def test_view_token_does_not_pass_for_control() -> None:
    token = tokens.sign(SECRET, "view", "abc123", ttl=60)
    with pytest.raises(TokenError, match="not 'control'"):
        tokens.verify(SECRET, token, "control")
    assert tokens.verify(SECRET, token, ("view", "control")).purpose == "view"


def test_every_token_is_distinct() -> None:
    first = tokens.sign(SECRET, "view", "abc123", ttl=60, now=1000)
    second = tokens.sign(SECRET, "view", "abc123", ttl=60, now=1000)
    assert first != second


def test_replay_guard_admits_a_token_once() -> None:
    guard = tokens.ReplayGuard()
    claims = tokens.verify(SECRET, tokens.sign(SECRET, "view", "abc123", ttl=60, now=1000), "view", now=1000)
    guard.use(claims, now=1000)
    with pytest.raises(TokenError, match="already used"):
        guard.use(claims, now=1001)
    other = tokens.verify(SECRET, tokens.sign(SECRET, "view", "abc123", ttl=60, now=1000), "view", now=1000)
    guard.use(other, now=1001)


def test_replay_guard_forgets_expired_nonces() -> None:
    guard = tokens.ReplayGuard()
    for i in range(1100):
        guard.use(tokens.TokenClaims("view", "abc123", 1000 + i, f"nonce{i:012d}x"), now=0)
    assert len(guard) == 1100
    guard.use(tokens.TokenClaims("view", "abc123", 5000, "late-nonce-000000"), now=2050)
    # Only the nonces still valid at 2050 (expiry >= 2050) and the new one remain.
    assert len(guard) == 51


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
