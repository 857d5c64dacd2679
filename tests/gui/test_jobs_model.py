"""Pure logic of the jobs panel: the table model, the buttons, the feed's coalescing.

No backend here: JobInfo snapshots in, rows and signals out. The panel against
the real backend is ``test_jobs_panel.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest
from PySide6.QtCore import QPersistentModelIndex, Qt

from app.jobs_feed import JobsFeed
from app.models.devices import DeviceTableModel
from app.models.jobs import PROGRESS_ROLE, JobColumn, JobTableModel, can_cancel, can_retry
from app.widgets.jobs_panel import JobsPanel
from backend.api import JobInfo
from tests.gui.snapshots import T0, device, job


@pytest.fixture
def devices(qapp):
    return DeviceTableModel()


@pytest.fixture
def model(devices):
    table = JobTableModel(devices)
    table.set_clock(lambda: T0 + timedelta(minutes=2))
    return table


def _row(model, job_id, role=Qt.ItemDataRole.DisplayRole):
    row = model.row_of(job_id)
    return {column: model.data(model.index(row, column), role) for column in JobColumn}


def test_rows_show_every_column(model, devices):
    devices.apply(device("dev-7", "provisioning", name="checkout-7"))
    error = "container exited with code 2 while booting\ncorral-entrypoint: CORRAL_SCREEN must look like …"
    model.reset_jobs(
        [
            job(
                8,
                "running",
                attempts=2,
                progress=0.55,
                progress_message="starting container",
                device_id="dev-7",
            ),
            job(7, "failed", attempts=3, progress=0.7, error=error, device_id="dev-gone-1234567"),
        ]
    )

    assert _row(model, 8) == {
        JobColumn.ID: "8",
        JobColumn.KIND: "provision",
        JobColumn.DEVICE: "checkout-7",
        JobColumn.STATE: "running",
        JobColumn.ATTEMPT: "2/3",
        JobColumn.PROGRESS: "55%",
        JobColumn.MESSAGE: "starting container",
        JobColumn.AGE: "2m",
        JobColumn.ERROR: "",
    }
    failed = _row(model, 7)
    assert failed[JobColumn.DEVICE] == "dev-gone"  # never seen: its short id
    assert failed[JobColumn.ERROR] == "container exited with code 2 while booting …"
    assert _row(model, 7, Qt.ItemDataRole.ToolTipRole)[JobColumn.ERROR] == error
    assert "Attempt 3 of 3" in _row(model, 7, Qt.ItemDataRole.ToolTipRole)[JobColumn.STATE]
    assert _row(model, 8, PROGRESS_ROLE)[JobColumn.PROGRESS] == pytest.approx(0.55)
    assert model.headerData(JobColumn.ATTEMPT, Qt.Orientation.Horizontal) == "Attempt"


def test_a_cancel_request_shows_until_the_job_stops(model):
    model.reset_jobs([job(1, "running", cancel_requested=True, progress_message="waiting")])
    assert _row(model, 1)[JobColumn.MESSAGE] == "cancelling…"


def test_device_names_follow_the_devices_model_and_outlive_removal(model, devices):
    model.reset_jobs(
        [job(1, "succeeded", device_id="dev-a"), job(2, "running", kind="remove", device_id="dev-a")]
    )
    assert _row(model, 1)[JobColumn.DEVICE] == "dev-a"

    devices.apply(device("dev-a", "ready", name="alpha"))
    assert _row(model, 1)[JobColumn.DEVICE] == "alpha"
    devices.apply(device("dev-a", "removed", name="alpha", updated_at=T0 + timedelta(seconds=1)))
    assert devices.device("dev-a") is None
    assert _row(model, 2)[JobColumn.DEVICE] == "alpha"


def test_listings_merge_in_place_so_selections_survive(model, qtbot):
    model.reset_jobs([job(3), job(2, "running"), job(1, "failed")])
    kept = QPersistentModelIndex(model.index(model.row_of(2), JobColumn.STATE))
    inserted: list[tuple[int, int]] = []
    removed: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _parent, first, last: inserted.append((first, last)))
    model.rowsRemoved.connect(lambda _parent, first, last: removed.append((first, last)))

    model.reset_jobs([job(4), job(3, "running"), job(2, "succeeded")])

    assert [j.id for j in model.jobs()] == [4, 3, 2]
    assert inserted == [(0, 0)]
    assert removed == [(2, 2)]  # job 1, before the new one went in
    assert kept.isValid() and kept.data() == "succeeded"


def test_retry_and_cancel_apply_to_the_right_states():
    assert [s for s in ("queued", "running", "succeeded", "failed", "cancelled") if can_retry(job(1, s))] == [
        "failed",
        "cancelled",
    ]
    assert [
        s for s in ("queued", "running", "succeeded", "failed", "cancelled") if can_cancel(job(1, s))
    ] == [
        "queued",
        "running",
    ]
    assert not can_cancel(job(1, "running", cancel_requested=True))


def test_panel_buttons_follow_the_selection(model, qtbot):
    panel = JobsPanel(model)
    qtbot.addWidget(panel)
    model.reset_jobs([job(3, "running"), job(2, "failed"), job(1, "cancelled")])
    assert not panel.retry_button().isEnabled() and not panel.cancel_button().isEnabled()
    assert panel.summary_text() == "3 jobs  ·  1 running  ·  1 failed"

    panel.select_job(3)
    assert panel.cancel_button().isEnabled() and not panel.retry_button().isEnabled()
    with qtbot.waitSignal(panel.cancel_requested) as cancel:
        panel.cancel_button().click()
    assert cancel.args == [[3]]

    panel.table().selectAll()
    assert panel.retry_button().text() == "Retry 2"
    with qtbot.waitSignal(panel.retry_requested) as retry:
        panel.retry_button().click()
    assert retry.args == [[2, 1]]

    # A listing that changes the selected job's state updates the buttons.
    panel.select_job(2)
    model.reset_jobs([job(3, "running"), job(2, "queued", attempts=0), job(1, "cancelled")])
    assert panel.cancel_button().isEnabled() and not panel.retry_button().isEnabled()

    with qtbot.waitSignal(panel.state_filter_changed) as filtered:
        panel.set_state_filter("failed")
    assert filtered.args == ["failed"]


class _SlowJobs:
    """The feed's side of ``Corral``: ``jobs()`` waits until the test lets it answer."""

    def __init__(self) -> None:
        self.listener: Callable[[], None] | None = None
        self.calls: list[str | None] = []
        self.gate = asyncio.Event()

    async def jobs(self, state: str | None = None, limit: int = 500) -> list[JobInfo]:
        self.calls.append(state)
        await self.gate.wait()
        return [job(len(self.calls), state or "queued")]

    async def retry_job(self, job_id: int) -> JobInfo:
        raise NotImplementedError

    async def cancel_job(self, job_id: int) -> JobInfo:
        raise NotImplementedError

    def add_jobs_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        self.listener = listener
        return lambda: setattr(self, "listener", None)


async def _settle(feed: JobsFeed) -> None:
    for _ in range(100):
        await asyncio.sleep(0)
        if not feed.is_busy():
            return
    raise AssertionError("the feed did not settle")


async def test_a_burst_of_changes_costs_one_more_listing():
    backend = _SlowJobs()
    listed: list[list[JobInfo]] = []
    feed = JobsFeed(backend, listed.append, pytest.fail)
    feed.set_active(True)
    feed.start()
    await asyncio.sleep(0)
    assert backend.calls == [None]

    for _ in range(25):  # e.g. one NOTIFY per progress update of many jobs
        backend.listener()
    backend.gate.set()
    await _settle(feed)

    assert backend.calls == [None, None]
    assert len(listed) == 2
    backend.listener()
    await _settle(feed)
    assert len(backend.calls) == 3
    feed.stop()
    assert backend.listener is None


async def test_an_inactive_feed_only_notes_changes():
    backend = _SlowJobs()
    backend.gate.set()
    listed: list[list[JobInfo]] = []
    feed = JobsFeed(backend, listed.append, pytest.fail)
    feed.start()
    for _ in range(5):
        backend.listener()
    # No listing in flight and none scheduled: nothing can list later either.
    assert not feed.is_busy()
    assert backend.calls == []

    feed.set_active(True)
    await _settle(feed)
    assert backend.calls == [None] and len(listed) == 1
    feed.set_active(True)  # nothing changed since: no listing
    await _settle(feed)
    assert len(backend.calls) == 1
    feed.stop()


async def test_a_filter_change_in_flight_drops_the_stale_listing():
    backend = _SlowJobs()
    listed: list[list[JobInfo]] = []
    feed = JobsFeed(backend, listed.append, pytest.fail)
    feed.set_active(True)
    feed.start()
    await asyncio.sleep(0)
    feed.set_state("failed")
    backend.gate.set()
    await _settle(feed)

    assert backend.calls == [None, "failed"]
    assert [[j.state for j in jobs] for jobs in listed] == [["failed"]]
    feed.stop()


async def test_a_failed_listing_is_reported_and_the_next_change_tries_again():
    errors: list[BaseException] = []
    listed: list[list[JobInfo]] = []

    class Flaky(_SlowJobs):
        async def jobs(self, state: str | None = None, limit: int = 500) -> list[JobInfo]:
            self.calls.append(state)
            if len(self.calls) == 1:
                raise OSError("database restarting")
            return []

    backend = Flaky()
    feed = JobsFeed(backend, listed.append, errors.append)
    feed.set_active(True)
    feed.start()
    await _settle(feed)
    assert [str(e) for e in errors] == ["database restarting"] and listed == []

    backend.listener()
    await _settle(feed)
    assert listed == [[]]
    feed.stop()
