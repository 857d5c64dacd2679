"""Admission: which request paths open which device, in which scope, and only once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from backend.auth.tokens import sign
from backend.stream.admission import Admission, Ticket, stream_path
from backend.stream.exceptions import StreamRefused

SECRET = b"s" * 32


def _target(device_id: str, token: str) -> str:
    return f"{stream_path(device_id)}?token={token}"


def _signed(body: str) -> str:
    """A correctly signed token around an arbitrary body, bypassing sign()'s checks."""
    digest = hmac.new(SECRET, body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


@pytest.mark.parametrize("scope", ["view", "control"])
def test_a_valid_token_on_its_devices_path_is_admitted_with_its_scope(scope: str) -> None:
    token = sign(SECRET, scope, "dev-1", 60)  # type: ignore[arg-type]
    assert Admission(SECRET).admit(_target("dev-1", token)) == Ticket("dev-1", scope)  # type: ignore[arg-type]


def test_a_token_opens_its_device_once() -> None:
    admission = Admission(SECRET)
    token = sign(SECRET, "view", "dev-1", 60)
    admission.admit(_target("dev-1", token))
    with pytest.raises(StreamRefused, match="already used"):
        admission.admit(_target("dev-1", token))


def test_a_token_for_another_device_is_refused_and_not_spent() -> None:
    admission = Admission(SECRET)
    token = sign(SECRET, "control", "dev-a", 60)
    with pytest.raises(StreamRefused, match="for device dev-a used for device dev-b"):
        admission.admit(_target("dev-b", token))
    assert admission.admit(_target("dev-a", token)) == Ticket("dev-a", "control")


REFUSED = {
    "old websockify path": lambda: f"/websockify?token={sign(SECRET, 'view', 'dev-1', 60)}",
    "no path": lambda: f"/?token={sign(SECRET, 'view', 'dev-1', 60)}",
    "path below a device": lambda: f"/devices/dev-1/x?token={sign(SECRET, 'view', 'dev-1', 60)}",
    "climbing path": lambda: f"/devices/..?token={sign(SECRET, 'view', 'dev-1', 60)}",
    "no query": lambda: "/devices/dev-1",
    "empty token": lambda: "/devices/dev-1?token=",
    "two tokens": lambda: (
        _target("dev-1", sign(SECRET, "view", "dev-1", 60)) + f"&token={sign(SECRET, 'view', 'dev-1', 60)}"
    ),
    "garbage": lambda: _target("dev-1", "garbage"),
    "expired": lambda: _target("dev-1", sign(SECRET, "view", "dev-1", -5)),
    "other secret": lambda: _target("dev-1", sign(b"k" * 32, "view", "dev-1", 60)),
    "agent token": lambda: _target("dev-1", sign(SECRET, "agent", "dev-1", 60)),
    "bad id, signed": lambda: _target("dev-1", _signed(f"v2.view.../x.{int(time.time()) + 60}.{'n' * 22}")),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused(case: str) -> None:
    target = REFUSED[case]()
    with pytest.raises(StreamRefused) as refused:
        Admission(SECRET).admit(target)
    # The reason never repeats the token.
    token = target.partition("token=")[2]
    if token:
        assert token.split(".")[-1] not in str(refused.value)


def test_tokens_issued_before_not_before_are_refused() -> None:
    # A restarted relay has an empty replay guard: tokens the previous one may
    # have admitted (issued before it died) must not open anything.
    not_before = 1_000_000
    admission = Admission(SECRET, token_ttl=60, not_before=not_before)
    for signed_at in (not_before - 5, not_before - 0.001):
        old = sign(SECRET, "view", "dev-1", 60, now=signed_at)
        with pytest.raises(StreamRefused, match="issued before this proxy started"):
            admission.admit(_target("dev-1", old), now=not_before + 1)
    for signed_at in (not_before, not_before + 0.999):
        fresh = sign(SECRET, "view", "dev-1", 60, now=signed_at)
        assert admission.admit(_target("dev-1", fresh), now=not_before + 1) == Ticket("dev-1", "view")


def test_a_short_secret_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="too short"):
        Admission(b"short")
