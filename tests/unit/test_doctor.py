"""`corral doctor`'s pure checks."""

from __future__ import annotations

from backend.doctor import Check, device_uid_check


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
