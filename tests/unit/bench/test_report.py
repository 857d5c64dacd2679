import io
import json
import math
from pathlib import Path

import pytest

from bench.report import Figure, Report, format_value


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (5612.4, "jobs/s", "5,612 jobs/s"),
        (145.6, "%", "146%"),
        (28.44, "fps", "28.4 fps"),
        (0.714, "s", "0.71 s"),
        (1.954, "x", "1.95x"),
        (-12.25, "MB", "-12.2 MB"),
        (None, "s", "n/a"),
        (math.nan, "s", "n/a"),
        (math.inf, "x", "infx"),
        (3.0, "", "3.00"),
    ],
)
def test_format_value(value: float | None, unit: str, expected: str) -> None:
    assert format_value(value, unit) == expected


@pytest.mark.parametrize(
    ("value", "target", "better", "met"),
    [
        (2.0, 2.0, "lower", True),
        (2.01, 2.0, "lower", False),
        (4000.0, 4000.0, "higher", True),
        (3999.9, 4000.0, "higher", False),
        (None, 5.0, "lower", False),
        (math.nan, 5.0, "higher", False),
        (7.0, None, "lower", None),
    ],
)
def test_figure_met(value: float | None, target: float | None, better: str, met: bool | None) -> None:
    assert Figure("k", value, "s", "k", target, better).met is met  # type: ignore[arg-type]


def test_figure_and_ratio_print_lines_at_once() -> None:
    out = io.StringIO()
    report = Report("provision", out=out)
    report.figure("one_s", 0.714, "s", target=2.0, label="1 device, median")
    report.figure("batch", 3500.0, "jobs/s", target=4000.0, better="higher", label="batch")
    report.figure("cpu", 87.0, "%", label="CPU")
    report.ratio("one_vs_bare", 0.714, 0.357, label="against bare")
    assert out.getvalue().splitlines() == [
        "1 device, median: 0.71 s (target <= 2.00 s: met)",
        "batch: 3,500 jobs/s (target >= 4,000 jobs/s: MISSED)",
        "CPU: 87.0%",
        "against bare: 2.00x (baseline 0.36)",
    ]


def test_finish_prints_verdicts_writes_json_and_fails_on_a_miss(tmp_path: Path) -> None:
    out = io.StringIO()
    report = Report("jobs", out=out)
    report.figure("p99_ms", 3.5, "ms", target=5.0)
    report.figure("batch", 3500.0, "jobs/s", target=4000.0, better="higher")
    report.ratio("vs_procrastinate", 3500.0, 0.0)
    report.detail("samples", [1, 2])
    path = tmp_path / "out" / "jobs.json"
    assert report.finish(path) == 1
    lines = out.getvalue().splitlines()
    assert lines[-4:] == [
        "target p99_ms <= 5.00 ms: met (3.50 ms)",
        "target batch >= 4,000 jobs/s: MISSED (3,500 jobs/s)",
        "jobs: 2 targets, 1 met, 1 MISSED",
        f"figures written to {path}",
    ]
    assert json.loads(path.read_text()) == {
        "name": "jobs",
        "ok": False,
        "figures": {
            "p99_ms": {
                "value": 3.5,
                "unit": "ms",
                "label": "p99_ms",
                "target": 5.0,
                "better": "lower",
                "baseline": None,
                "met": True,
            },
            "batch": {
                "value": 3500.0,
                "unit": "jobs/s",
                "label": "batch",
                "target": 4000.0,
                "better": "higher",
                "baseline": None,
                "met": False,
            },
            "vs_procrastinate": {
                "value": None,
                "unit": "x",
                "label": "vs_procrastinate",
                "target": None,
                "better": "lower",
                "baseline": 0.0,
                "met": None,
            },
        },
        "checks": {},
        "errors": [],
        "details": {"samples": [1, 2]},
    }


def test_all_targets_met_exits_zero_and_an_error_exits_one() -> None:
    report = Report("grid", out=io.StringIO())
    report.figure("fps", 29.0, "fps", target=28.0, better="higher")
    assert report.finish() == 0
    report.error("a device did not come up")
    assert report.finish() == 1
    assert report.summary()[-1] == "grid: 1 targets, 1 met, 0 MISSED, 1 errors"


def test_a_key_recorded_twice_is_refused() -> None:
    report = Report("x", out=io.StringIO())
    report.figure("a", 1.0, "s")
    with pytest.raises(ValueError, match="'a' recorded twice"):
        report.figure("a", 2.0, "s")


def test_a_failed_check_fails_the_run_and_is_listed(tmp_path: Path) -> None:
    out = io.StringIO()
    report = Report("soak", out=out)
    report.check("jobs_terminal", True, "41 jobs")
    report.check("docker_matches_database", False, "containers without a device: corral-x")
    path = tmp_path / "soak.json"
    assert report.finish(path) == 1
    assert out.getvalue().splitlines() == [
        "check jobs_terminal: passed (41 jobs)",
        "check docker_matches_database: FAILED (containers without a device: corral-x)",
        "",
        "check jobs_terminal: passed (41 jobs)",
        "check docker_matches_database: FAILED (containers without a device: corral-x)",
        "soak: 0 targets, 0 met, 0 MISSED; 2 checks, 1 passed, 1 FAILED",
        f"figures written to {path}",
    ]
    assert json.loads(path.read_text())["checks"] == {
        "jobs_terminal": {"passed": True, "detail": "41 jobs"},
        "docker_matches_database": {"passed": False, "detail": "containers without a device: corral-x"},
    }
