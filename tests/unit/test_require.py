"""CORRAL_REQUIRE turns the skips of missing components into failures (tests/require.py).

Each case runs pytest in a subprocess on a small test file, with the project's
conftest loaded as a plugin and DOCKER_HOST pointing at a socket nobody serves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TINY = """
import pytest

from tests.require import missing


def test_needs_docker(docker_available):
    pass


def test_needs_xvnc():
    missing("xvnc", "no Xvnc here")


def test_plain_skip():
    pytest.skip("lost a race")


@pytest.mark.skipif(True, reason="not today")
def test_marked_skip():
    pass


def test_passes():
    pass
"""

IMPORTORSKIP = """
import pytest

pytest.importorskip("corral_no_such_module")


def test_never_runs():
    pass
"""


def _run(tmp_path: Path, source: str, require: str | None) -> tuple[int, dict[str, str], str]:
    """Run *source* as a test file; return pytest's exit code, each test's outcome, and the output."""
    (tmp_path / "test_tiny.py").write_text(source)
    report = tmp_path / "report.xml"
    env = {key: value for key, value in os.environ.items() if key != "CORRAL_REQUIRE"}
    env |= {"PYTHONPATH": str(ROOT), "DOCKER_HOST": f"unix://{tmp_path}/dead.sock"}
    if require is not None:
        env["CORRAL_REQUIRE"] = require
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "tests.conftest"]
    command += ["--rootdir", str(tmp_path), f"--junitxml={report}", "test_tiny.py"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    outcomes: dict[str, str] = {}
    if report.exists():
        for case in ET.parse(report).iter("testcase"):
            children = [child.tag for child in case if child.tag in ("skipped", "failure", "error")]
            outcomes[case.get("name", "?")] = children[0] if children else "passed"
    return done.returncode, outcomes, output


def test_without_corral_require_missing_components_skip(tmp_path: Path) -> None:
    code, outcomes, output = _run(tmp_path, TINY, None)
    assert code == 0, output
    assert outcomes == {
        "test_needs_docker": "skipped",
        "test_needs_xvnc": "skipped",
        "test_plain_skip": "skipped",
        "test_marked_skip": "skipped",
        "test_passes": "passed",
    }
    assert "docker missing: no Docker daemon answers" in output


def test_a_required_component_that_is_missing_fails_with_the_reason(tmp_path: Path) -> None:
    code, outcomes, output = _run(tmp_path, TINY, "docker")
    assert code == 1, output
    assert outcomes == {
        # The docker_available fixture fails, so the test errors in its set-up.
        "test_needs_docker": "error",
        # Not required: still a skip.
        "test_needs_xvnc": "skipped",
        # Any other skip is a failure once CORRAL_REQUIRE is set.
        "test_plain_skip": "failure",
        "test_marked_skip": "error",
        "test_passes": "passed",
    }
    assert "docker is required (CORRAL_REQUIRE=docker) but missing: no Docker daemon answers" in output
    assert "a skip is a failure here): lost a race" in output
    assert "a skip is a failure here): not today" in output


def test_every_listed_component_is_required(tmp_path: Path) -> None:
    code, outcomes, output = _run(tmp_path, TINY, "docker, postgres,display,xvnc")
    assert code == 1, output
    assert outcomes["test_needs_xvnc"] == "failure"
    assert "xvnc is required (CORRAL_REQUIRE=docker, postgres,display,xvnc) but missing: no Xvnc" in output


def test_importorskip_fails_collection_under_corral_require(tmp_path: Path) -> None:
    code, _, output = _run(tmp_path, IMPORTORSKIP, "docker")
    assert code == 2, output  # interrupted: errors during collection
    assert "corral_no_such_module" in output
    code, _, output = _run(tmp_path, IMPORTORSKIP, None)
    assert code == 5, output  # everything skipped at collection: nothing ran


def test_an_unknown_component_is_a_usage_error(tmp_path: Path) -> None:
    code, _, output = _run(tmp_path, TINY, "docker,dockr")
    assert code == 4, output
    assert "CORRAL_REQUIRE names unknown components ['dockr']" in output
