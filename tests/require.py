"""``CORRAL_REQUIRE``: a missing component fails the run instead of skipping it.

A test that needs something the machine may lack (a Docker daemon, an X
display, TigerVNC) calls :func:`missing` instead of ``pytest.skip``. Without
``CORRAL_REQUIRE`` that skips with the reason, as on a developer's laptop. With
``CORRAL_REQUIRE=docker,postgres,display,xvnc`` (what ``make test`` and
``.ci/run`` set) the test fails with the same reason: a run that could not test
the integration is not green.

Once ``CORRAL_REQUIRE`` is set (even to a subset), every other skip fails too:
``pytest.skip``, ``skipif``/``skip`` markers and ``importorskip``. The only
skip still allowed is :func:`missing` for a component the run did not list.
Its hooks are imported into ``tests/conftest.py``, which registers them.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import NoReturn

import pytest

__all__ = [
    "COMPONENTS",
    "ENV",
    "missing",
    "pytest_configure",
    "pytest_make_collect_report",
    "pytest_runtest_makereport",
    "required",
]

ENV = "CORRAL_REQUIRE"
COMPONENTS = frozenset({"docker", "postgres", "display", "xvnc"})
"""docker: a Docker daemon that answers; postgres: the embedded (or configured)
server starts; display: an X display (Xvfb) for the GUI tests; xvnc: TigerVNC's
Xvnc and Chromium, the fake devices of the stream and grid tests."""

_ALLOWED_PREFIX = f"not in {ENV}: "
"""Marks the reason of a skip from :func:`missing` for a component not required."""


def required() -> frozenset[str]:
    """The components ``CORRAL_REQUIRE`` lists (comma-separated); raise UsageError on an unknown one."""
    names = frozenset(part.strip() for part in os.environ.get(ENV, "").split(",") if part.strip())
    unknown = names - COMPONENTS
    if unknown:
        raise pytest.UsageError(
            f"{ENV} names unknown components {sorted(unknown)}; known: {', '.join(sorted(COMPONENTS))}"
        )
    return names


def missing(component: str, reason: str) -> NoReturn:
    """Fail (when *component* is required) or skip the current test because *component* is missing."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}")
    if component in required():
        pytest.fail(f"{component} is required ({ENV}={os.environ[ENV]}) but missing: {reason}", pytrace=False)
    pytest.skip(f"{_ALLOWED_PREFIX}{component} missing: {reason}")


def _skip_reason(longrepr: object) -> str:
    # A skip's longrepr is (path, line, "Skipped: <reason>").
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = _skip_reason(report.longrepr)
    if reason.startswith(_ALLOWED_PREFIX):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped while {ENV}={os.environ[ENV]} is set (a skip is a failure here): {reason}"


def pytest_configure(config: pytest.Config) -> None:
    required()  # an unknown component name stops the run before it starts


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if required() and report.skipped and not hasattr(report, "wasxfail"):
        _fail_skip(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if required() and report.skipped:
        _fail_skip(report)
