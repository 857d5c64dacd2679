"""What a hostile device answers is recorded safely: real Postgres, the run's real rows."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.config import Settings
from backend.db import Database
from backend.flows.model import StepEvent
from backend.flows.runs import FlowRuns, RunRequest
from backend.flows.runs_record import MAX_ERROR_CHARS, StepRecorder


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    database = await Database.open(settings)
    connection = await database.connect_raw()
    try:
        await connection.execute(
            "INSERT INTO devices (id, name, kind, state) VALUES ('dev1', 'dev1', 'browser', 'ready')"
        )
    finally:
        await connection.close()
    yield database
    await database.close()


def _step(seq: int, label: str, command: str = "copy_text") -> StepEvent:
    return StepEvent(seq=seq, role="device", index=seq, label=label, command=command, file="f.yaml", line=seq)


async def test_nul_huge_errors_and_fake_images_from_a_device_are_recorded_safely(
    database: Database, tmp_path: Path
) -> None:
    runs = FlowRuns(database)
    (run,) = await runs.start([RunRequest("evil", "f.yaml", {"device": "dev1"}, 3, {"command": {}})], "b1")
    recorder = StepRecorder(database, tmp_path, run.id, {"device": "dev1"}, 3)

    await recorder.step_started(_step(1, "openLink a\x00b"))
    await recorder.step_finished(
        _step(1, "openLink a\x00b"),
        "passed",
        error=None,
        data={"text": "x\x00y", "k\x00": ["\x00"]},
        duration=0.1,
    )
    svg = base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode()
    await recorder.step_started(_step(2, "takeScreenshot s", "screenshot"))
    await recorder.step_finished(
        _step(2, "takeScreenshot s", "screenshot"), "passed", error=None, data={"png": svg}, duration=0.1
    )
    await recorder.step_started(_step(3, "tapOn x"))
    await recorder.step_finished(
        _step(3, "tapOn x"), "failed", error="E\x00" * (4 << 20), data={}, duration=0.1
    )
    await runs.finish(run.id, "failed", error="tapOn x: " + "E\x00" * (4 << 20))

    steps = await runs.steps(run.id)
    assert [(s.seq, s.label, s.state) for s in steps] == [
        (1, "openLink a\ufffdb", "passed"),
        (2, "takeScreenshot s", "passed"),
        (3, "tapOn x", "failed"),
    ]
    assert steps[0].data == {"text": "x\ufffdy", "k\ufffd": ["\ufffd"]}
    assert steps[1].data == {"png_error": "the device sent a screenshot that is not a PNG image"}
    assert steps[1].screenshot is None
    assert not (tmp_path / "flows").exists()
    assert steps[2].error is not None
    assert len(steps[2].error) == MAX_ERROR_CHARS == 4096
    assert steps[2].error.startswith("E\ufffdE\ufffd")
    final = await runs.get(run.id)
    assert final.state == "failed"
    assert final.error is not None
    assert len(final.error) == 4096
    assert final.error.startswith("tapOn x: E\ufffd")
