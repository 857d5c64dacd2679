"""What every benchmark script shares: figures, targets, ratios, JSON and the exit status.

    from bench.report import Report

    report = Report("provision")
    report.figure("one_device_s", 0.71, "s", target=2.0, better="lower",
                  label="provision-to-first-frame, 1 device, median")
    report.ratio("one_device_vs_bare", 0.71, 0.45, label="against the bare container start")
    report.detail("rounds", [0.70, 0.71, 0.74])     # anything JSON-able, kept in the file
    sys.exit(report.finish(args.json))

Contract:

- :meth:`Report.figure` prints one line at once (``label: value unit (target <= 2 s: met)``)
  and records it. ``target`` is optional; ``better`` says which side meets it
  (``"lower"``: value <= target, ``"higher"``: value >= target).
- :meth:`Report.ratio` records ``numerator / denominator`` (unit ``x``), the ratio
  to a baseline measured in the same run; it may carry a target too.
- :meth:`Report.check` records a pass/fail end check (soak: "every job terminal");
  a failed check fails the run.
- :meth:`Report.error` records that something could not be measured (a device
  did not come up, ...): the run then fails even if every target was met.
- :meth:`Report.finish` prints one ``target … met`` / ``target … MISSED`` line per
  target and a summary, writes the JSON (when a path is given) and returns the
  exit status: 0 when every target was met, every check passed and no error was
  recorded, else 1.
  The file holds ``{"name", "ok", "figures": {key: {...}}, "checks": {key: {"passed",
  "detail"}}, "errors", "details"}``.

Keys are unique within a report (a duplicate raises ValueError). The formatting
functions are pure; nothing here measures anything. A script run as ``python
bench/<name>.py`` puts the repository root on ``sys.path`` before importing this
(``sys.path.insert(0, str(Path(__file__).resolve().parents[1]))``).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

__all__ = ["Better", "Figure", "Report", "format_value"]

Better = Literal["lower", "higher"]


def format_value(value: float | None, unit: str = "") -> str:
    """A figure as people read it: ``5,600 jobs/s``, ``28.4 fps``, ``0.71 s``, ``1.95x``."""
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        text = "inf"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    if not unit:
        return text
    return f"{text}{unit}" if unit in ("x", "%") else f"{text} {unit}"


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured value, with its target if it has one."""

    key: str
    value: float | None
    unit: str
    label: str
    target: float | None = None
    better: Better = "lower"
    baseline: float | None = None
    """For a ratio: the denominator (the baseline figure of the same run)."""

    @property
    def met(self) -> bool | None:
        """True/False against the target; None without one. A missing value misses."""
        if self.target is None:
            return None
        if self.value is None or math.isnan(self.value):
            return False
        return self.value <= self.target if self.better == "lower" else self.value >= self.target

    def target_text(self) -> str:
        """``<= 2 s`` or ``>= 4,000 jobs/s``."""
        sign = "<=" if self.better == "lower" else ">="
        return f"{sign} {format_value(self.target, self.unit)}"

    def line(self) -> str:
        """How :meth:`Report.figure` prints it."""
        text = f"{self.label}: {format_value(self.value, self.unit)}"
        if self.baseline is not None:
            text += f" (baseline {format_value(self.baseline)})"
        if self.target is not None:
            text += f" (target {self.target_text()}: {'met' if self.met else 'MISSED'})"
        return text

    def verdict(self) -> str:
        """How :meth:`Report.finish` prints a figure with a target."""
        state = "met" if self.met else "MISSED"
        return f"target {self.key} {self.target_text()}: {state} ({format_value(self.value, self.unit)})"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["key"]
        data["met"] = self.met
        for name in ("value", "baseline"):
            if isinstance(data[name], float) and not math.isfinite(data[name]):
                data[name] = None  # JSON has no inf/nan
        return data


class Report:
    """Collects one script's figures; see the module docstring for the contract."""

    def __init__(self, name: str, out: TextIO | None = None) -> None:
        self.name = name
        self.figures: dict[str, Figure] = {}
        self.checks: dict[str, tuple[bool, str]] = {}
        self.errors: list[str] = []
        self.details: dict[str, Any] = {}
        self._out = out

    def figure(
        self,
        key: str,
        value: float | None,
        unit: str,
        *,
        target: float | None = None,
        better: Better = "lower",
        label: str | None = None,
    ) -> Figure:
        """Record and print one figure."""
        return self._add(Figure(key, value, unit, label or key, target, better))

    def ratio(
        self,
        key: str,
        numerator: float,
        denominator: float,
        *,
        target: float | None = None,
        better: Better = "lower",
        label: str | None = None,
    ) -> Figure:
        """Record and print ``numerator / denominator`` (n/a when the denominator is 0)."""
        value = numerator / denominator if denominator else None
        return self._add(Figure(key, value, "x", label or key, target, better, baseline=denominator))

    def check(self, key: str, passed: bool, detail: str = "") -> None:
        """Record and print a pass/fail check; *detail* says what was found."""
        if key in self.checks:
            raise ValueError(f"check {key!r} recorded twice in {self.name}")
        self.checks[key] = (passed, detail)
        self._print(_check_line(key, passed, detail))

    def error(self, message: str) -> None:
        """Record (and print) something that could not be measured; the run fails."""
        self.errors.append(message)
        self._print(f"ERROR: {message}")

    def detail(self, key: str, value: Any) -> None:
        """Keep extra JSON-able data in the file (not printed, no target)."""
        self.details[key] = value

    @property
    def ok(self) -> bool:
        return (
            not self.errors
            and all(f.met is not False for f in self.figures.values())
            and all(passed for passed, _ in self.checks.values())
        )

    def summary(self) -> list[str]:
        """The closing lines: one per target, then ``<name>: N targets, M met, K MISSED``."""
        targeted = [f for f in self.figures.values() if f.target is not None]
        missed = sum(1 for f in targeted if not f.met)
        lines = [f.verdict() for f in targeted]
        lines += [_check_line(key, passed, detail) for key, (passed, detail) in self.checks.items()]
        tail = f"{self.name}: {len(targeted)} targets, {len(targeted) - missed} met, {missed} MISSED"
        if self.checks:
            failed = sum(1 for passed, _ in self.checks.values() if not passed)
            tail += f"; {len(self.checks)} checks, {len(self.checks) - failed} passed, {failed} FAILED"
        if self.errors:
            tail += f", {len(self.errors)} errors"
        return [*lines, tail]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "figures": {key: figure.as_json() for key, figure in self.figures.items()},
            "checks": {
                key: {"passed": passed, "detail": detail} for key, (passed, detail) in self.checks.items()
            },
            "errors": list(self.errors),
            "details": self.details,
        }

    def finish(self, json_path: str | Path | None = None) -> int:
        """Print the verdicts, write the JSON if asked, and return the exit status (0 or 1)."""
        self._print("")
        for line in self.summary():
            self._print(line)
        if json_path:
            path = Path(json_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.as_json(), indent=2, default=str) + "\n")
            self._print(f"figures written to {path}")
        return 0 if self.ok else 1

    def _add(self, figure: Figure) -> Figure:
        if figure.key in self.figures:
            raise ValueError(f"figure {figure.key!r} recorded twice in {self.name}")
        self.figures[figure.key] = figure
        self._print(figure.line())
        return figure

    def _print(self, text: str) -> None:
        print(text, file=self._out or sys.stdout, flush=True)


def _check_line(key: str, passed: bool, detail: str) -> str:
    return f"check {key}: {'passed' if passed else 'FAILED'}" + (f" ({detail})" if detail else "")
