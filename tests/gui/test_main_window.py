"""Window behaviour not covered by the real-device and jobs-panel tests, on a real backend.

Devices, panes, layouts, control, removal, health and job errors are checked with
real devices in ``test_real_devices.py`` and ``test_jobs_panel.py``.
"""

from __future__ import annotations

import pytest

from backend.api import DEVICE_KINDS

pytestmark = pytest.mark.docker


def test_add_devices_dialog_shows_what_the_backend_refuses(qtbot, window, corral):
    window.action("add").trigger()
    dialog = window.add_devices_dialog()
    assert dialog is not None and dialog.isVisible()
    assert dialog.count_box().maximum() == 64
    # A kind this build cannot provision (as an older or newer client might ask for).
    assert "android" not in DEVICE_KINDS
    dialog.kind_box().addItem("android")
    dialog.kind_box().setCurrentText("android")

    dialog.add_button().click()

    qtbot.waitUntil(lambda: dialog.error_text() != "")
    assert dialog.error_text() == "unknown kind 'android'; valid kinds: browser"
    assert dialog.add_button().isEnabled()
    assert dialog.tracked_ids() == []
    assert window.model().rowCount() == 0
