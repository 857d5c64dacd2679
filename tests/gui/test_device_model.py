"""The device table model, from DeviceInfo snapshots (no backend, no page)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from PySide6.QtCore import Qt

from app.models.devices import DEVICE_ROLE, Column, DeviceTableModel, format_age
from tests.gui.snapshots import T0, device


@pytest.fixture
def model(qapp):
    table = DeviceTableModel()
    table.set_clock(lambda: T0 + timedelta(minutes=5))
    return table


def _cell(model, row, column, role=Qt.ItemDataRole.DisplayRole):
    return model.data(model.index(row, column), role)


def test_rows_show_name_kind_state_age_and_details(model):
    model.reset_devices(
        [device("a", "ready"), device("b", "provisioning", progress=0.4, progress_message="pulling")]
    )

    assert model.rowCount() == 2
    assert model.columnCount() == len(Column)
    assert [_cell(model, 0, c) for c in Column] == ["a", "browser", "ready", "5m", ""]
    assert _cell(model, 1, Column.DETAILS) == "pulling (40%)"
    assert model.headerData(Column.AGE, Qt.Orientation.Horizontal) == "Age"
    assert _cell(model, 0, Column.NAME, DEVICE_ROLE).id == "a"


def test_failed_rows_show_the_reason_in_details_and_tooltip(model):
    model.apply(device("a", "failed", reason="image corral/browser not found: run `corral images build`"))

    assert _cell(model, 0, Column.DETAILS) == "image corral/browser not found: run `corral images build`"
    tooltip = _cell(model, 0, Column.STATE, Qt.ItemDataRole.ToolTipRole)
    assert "Why: image corral/browser not found" in tooltip


def test_updates_change_rows_in_place_and_emit(model, qtbot):
    first = device("a", "requested")
    model.apply(first)
    with qtbot.waitSignal(model.dataChanged), qtbot.waitSignal(model.device_changed) as changed:
        model.apply(replace(first, state="booting", updated_at=T0 + timedelta(seconds=3)))

    assert model.rowCount() == 1
    assert _cell(model, 0, Column.STATE) == "booting"
    assert changed.args[0].state == "booting"


def test_older_snapshots_never_roll_a_row_back(model):
    model.apply(device("a", "ready", updated_at=T0 + timedelta(seconds=10)))
    model.apply(device("a", "booting", updated_at=T0 + timedelta(seconds=5)))

    assert _cell(model, 0, Column.STATE) == "ready"


def test_removed_devices_leave_the_table(model, qtbot):
    model.reset_devices([device("a"), device("b"), device("c")])

    with qtbot.waitSignal(model.device_removed) as removed:
        model.apply(device("b", "removed", updated_at=T0 + timedelta(seconds=1)))

    assert removed.args == ["b"]
    assert [_cell(model, row, Column.NAME) for row in range(model.rowCount())] == ["a", "c"]
    # The row map stays right after a removal in the middle.
    model.apply(device("c", "busy", updated_at=T0 + timedelta(seconds=2)))
    assert _cell(model, 1, Column.STATE) == "busy"


def test_a_listing_drops_rows_it_no_longer_has(model):
    model.reset_devices([device("a"), device("b")])
    model.reset_devices([device("b")])

    assert [d.id for d in model.devices()] == ["b"]


def test_keep_removed_keeps_the_row(qapp):
    table = DeviceTableModel(keep_removed=True)
    table.apply(device("a"))
    table.apply(device("a", "removed", updated_at=T0 + timedelta(seconds=1)))

    assert table.device("a").state == "removed"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h 00m"),
        (3 * 3600 + 300, "3h 05m"),
        (90000, "1d 1h"),
    ],
)
def test_format_age(seconds, text):
    assert format_age(T0, T0 + timedelta(seconds=seconds)) == text


def test_format_age_reads_naive_times_as_utc():
    assert format_age(T0.replace(tzinfo=None), T0 + timedelta(seconds=90)) == "1m"
