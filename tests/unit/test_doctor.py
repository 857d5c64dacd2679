"""`corral doctor`'s pure checks."""

from __future__ import annotations

import socket

from backend.doctor import Check, device_uid_check, display_problem


def test_devices_running_as_the_operator_are_fine() -> None:
    assert device_uid_check(1000, 1000) == Check("device uid", True, "devices run as your uid (1000)")


def test_a_uid_no_account_uses_is_fine() -> None:
    # 4000000000 is far above any uid an installer hands out.
    assert device_uid_check(4_000_000_000, 0) == Check(
        "device uid", True, "devices run as uid 4000000000, which no account on this host uses"
    )


def test_a_uid_that_is_an_account_is_flagged() -> None:
    # uid 65534 is `nobody` on Debian.
    assert device_uid_check(65534, 0) == Check(
        "device uid",
        False,
        "devices run as uid 65534, which is the account 'nobody': it can reach every device's "
        "screen and credential; set CORRAL_DEVICE_UID to a uid no account uses",
    )


def test_no_display_at_all() -> None:
    assert (
        display_problem({})
        == "no display (DISPLAY is not set): the window needs one; CLI commands work without"
    )


def test_a_local_display_nobody_serves() -> None:
    assert display_problem({"DISPLAY": ":54321"}) == (
        "DISPLAY=:54321, but no X server answers there (/tmp/.X11-unix/X54321): start one or fix DISPLAY"
    )


def test_a_local_display_that_answers() -> None:
    # An X server listens on the abstract socket "\0/tmp/.X11-unix/X<n>"; stand one up.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0/tmp/.X11-unix/X54322")
        server.listen(1)
        assert display_problem({"DISPLAY": ":54322.0"}) is None


def test_wayland_and_remote_displays_are_taken_on_trust() -> None:
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}) is None
    assert display_problem({"DISPLAY": "remote.example:0"}) is None
