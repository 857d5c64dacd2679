"""Turn build logs into progress: (fraction 0..1, short message). Pure, no I/O.

Three sources are understood:

- the classic Docker builder's stream (``Step 3/9 : RUN ...``), weighted by what
  each Dockerfile instruction usually costs (an ``apt-get install`` dwarfs a COPY);
- apt's output inside that step (``Get:12 ...``, ``Unpacking ...``, ``Setting up ...``);
- debootstrap's ``I: ...`` lines while the base image is bootstrapped.

Parsers are fed whole lines and return ``None`` for lines that move nothing.
Fractions never go backwards.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from backend.runtime.base import ProgressCallback

__all__ = [
    "AptProgress",
    "BuildProgress",
    "DebootstrapProgress",
    "dockerfile_steps",
    "scaled",
    "step_weight",
]

Update = tuple[float, str]


def scaled(progress: ProgressCallback | None, start: float, end: float) -> ProgressCallback:
    """A callback that maps 0..1 onto start..end of *progress* (a no-op if None)."""

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(start + (end - start) * min(max(fraction, 0.0), 1.0), message)

    return report


# --- Dockerfile ---------------------------------------------------------------


def dockerfile_steps(text: str) -> list[str]:
    """The instructions of a Dockerfile in order, one string each, as the builder counts steps.

    Continuation lines are joined; comments and blank lines are dropped.
    """
    steps: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # comments may sit between continuation lines
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
            continue
        current += line
        if current.strip():
            steps.append(current.strip())
        current = ""
    if current.strip():
        steps.append(current.strip())
    return steps


def step_weight(step: str) -> float:
    """Relative cost of one instruction: package installs dominate a cold build."""
    instruction = step.split(maxsplit=1)[0].upper() if step else ""
    if instruction == "RUN":
        return 40.0 if "apt-get install" in step or "apt install" in step else 3.0
    if instruction in ("COPY", "ADD"):
        return 0.5
    return 0.05


# --- apt ----------------------------------------------------------------------

_NEWLY_INSTALLED = re.compile(r"(\d+) upgraded, (\d+) newly installed")
_GET = re.compile(r"^Get:(\d+)\s+\S+\s+\S+\s+\S+\s+(\S+)")
_UNPACKING = re.compile(r"^Unpacking (\S+?)(?::\w+)? ")
_SETTING_UP = re.compile(r"^Setting up (\S+?)(?::\w+)? ")


class AptProgress:
    """Progress of ``apt-get update && apt-get install`` from its output lines.

    Weights follow where a cold Chromium install spends its time: index update
    5 %, downloads 10 %, unpacking 50 %, configuring 35 %. dpkg interleaves the
    phases (essential packages are set up early), so the fraction is the
    weighted sum of the three counters, not a phase pointer.
    The package count comes from the "N upgraded, M newly installed" summary.
    """

    def __init__(self) -> None:
        self._packages = 0
        self._downloaded = 0
        self._unpacked = 0
        self._configured = 0
        self._fraction = 0.0

    def feed(self, line: str) -> Update | None:
        line = line.strip()
        if match := _NEWLY_INSTALLED.search(line):
            self._packages = int(match[1]) + int(match[2])
            return self._report(f"apt: installing {self._packages} packages")
        if not self._packages:
            if line.startswith(("Get:", "Hit:")):
                self._fraction = max(self._fraction, 0.02)
                return self._fraction, "apt: updating package lists"
            return None
        if match := _GET.match(line):
            self._downloaded = int(match[1])
            return self._report(f"apt: downloading {match[2]}")
        if match := _UNPACKING.match(line):
            self._unpacked += 1
            return self._report(f"apt: unpacking {match[1]}")
        if match := _SETTING_UP.match(line):
            self._configured += 1
            return self._report(f"apt: setting up {match[1]}")
        return None

    def _report(self, message: str) -> Update:
        def part(count: int) -> float:
            return min(count / self._packages, 1.0)

        fraction = (
            0.05 + 0.10 * part(self._downloaded) + 0.50 * part(self._unpacked) + 0.35 * part(self._configured)
        )
        self._fraction = max(self._fraction, min(fraction, 1.0))
        return self._fraction, message


# --- docker build ---------------------------------------------------------------

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


class BuildProgress:
    """Progress of a classic ``docker build`` from its stream lines.

    *steps* are the Dockerfile's instructions (:func:`dockerfile_steps`). Extra
    steps the builder reports count as cheap LABEL steps (it adds one per
    ``labels`` entry); fewer than expected make every step weigh the same.
    """

    def __init__(self, steps: Sequence[str]) -> None:
        self._weights = [step_weight(step) for step in steps]
        self._step = 0
        self._total_steps = len(steps)
        self._apt: AptProgress | None = None
        self._fraction = 0.0

    def feed(self, line: str) -> Update | None:
        line = line.rstrip()
        if match := _STEP.match(line):
            self._step = int(match[1])
            total = int(match[2])
            if total > len(self._weights):
                # The builder appends one LABEL step per --label: cheap steps at the end.
                self._weights += [step_weight("LABEL")] * (total - len(self._weights))
            elif total < len(self._weights):
                self._weights = [1.0] * total
            self._total_steps = total
            instruction = match[3]
            self._apt = AptProgress() if step_weight(instruction) >= 40.0 else None
            message = f"step {self._step}/{total}: {_shorten(instruction)}"
            return self._report(self._start_of(self._step), message)
        if self._apt is not None and (update := self._apt.feed(line)):
            within, message = update
            start = self._start_of(self._step)
            end = self._start_of(self._step + 1)
            return self._report(start + (end - start) * within, message)
        if line.startswith("Successfully built"):
            return self._report(1.0, "image built")
        return None

    def _start_of(self, step: int) -> float:
        total = sum(self._weights) or 1.0
        return sum(self._weights[: max(step - 1, 0)]) / total

    def _report(self, fraction: float, message: str) -> Update:
        self._fraction = max(self._fraction, min(fraction, 1.0))
        return self._fraction, message


def _shorten(text: str, limit: int = 72) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- debootstrap --------------------------------------------------------------

_EXPECTED_MINBASE_PACKAGES = 90
_DEBOOTSTRAP_PHASES: dict[str, tuple[float, float]] = {
    # phase -> (start, end) of the fraction
    "Retrieving": (0.05, 0.45),
    "Extracting": (0.45, 0.55),
    "Unpacking": (0.55, 0.75),
    "Configuring": (0.75, 0.98),
}
_DEBOOTSTRAP_PACKAGE = re.compile(
    r"^I: (Retrieving|Extracting|Unpacking|Configuring) (\S+?)(?:\.\.\.)?(?: \S+)?$"
)


class DebootstrapProgress:
    """Progress of ``debootstrap`` from its ``I:`` lines (one per package and phase)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._packages = _EXPECTED_MINBASE_PACKAGES
        self._fraction = 0.0

    def feed(self, line: str) -> Update | None:
        line = line.strip()
        if not line.startswith("I: "):
            return None
        if line.startswith("I: Base system installed successfully"):
            return self._report(1.0, "base system installed")
        match = _DEBOOTSTRAP_PACKAGE.match(line)
        if match is None or match[2] in ("InRelease", "Release", "Packages", "required", "base", "the"):
            return self._report(self._fraction, line[3:].rstrip("."))
        phase, package = match[1], match[2]
        if phase != "Retrieving" and "Retrieving" in self._counts:
            # Every package is retrieved once: that count sizes the later phases.
            self._packages = max(self._counts["Retrieving"], 1)
        count = self._counts[phase] = self._counts.get(phase, 0) + 1
        start, end = _DEBOOTSTRAP_PHASES[phase]
        fraction = start + (end - start) * min(count / self._packages, 1.0)
        return self._report(fraction, f"{phase.lower()} {package}")

    def _report(self, fraction: float, message: str) -> Update:
        self._fraction = max(self._fraction, min(fraction, 1.0))
        return self._fraction, f"debootstrap: {message}"
