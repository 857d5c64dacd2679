"""open_url refuses the device's control files, however the URL spells them."""

from __future__ import annotations

import pytest

from agent.drivers.urls import refused_url

PRIVATE = "/run/corral holds the device's private files; no command opens them"
PROC = "/proc holds the device's private files; no command opens them"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///run/corral/agent.cred", PRIVATE),
        ("FILE:///run/corral/agent.cred", PRIVATE),
        ("file://localhost/run/corral/agent.cred", PRIVATE),
        ("file:///run/%63orral/agent.cred", PRIVATE),
        ("file:////run//corral/./x/../agent.cred", PRIVATE),
        ("file:///run/corral", PRIVATE),
        ("view-source:file:///run/corral/agent.cred", PRIVATE),
        ("view-source: view-source:file:///run/corral/hub.sock", PRIVATE),
        ("  file:///run/corral/agent.cred", PRIVATE),
        ("file:///proc/self/root/run/corral/agent.cred", PRIVATE),  # resolved through the link
        ("file:///proc/1/environ", PROC),
        ("file:///run/corral-other/x", None),
        ("file:///opt/corral/start/test/login.html", None),
        ("https://example.org/run/corral/agent.cred", None),
        ("about:blank", None),
    ],
)
def test_refused_urls(url: str, why: str | None) -> None:
    assert refused_url(url) == why
