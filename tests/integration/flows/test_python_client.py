"""The README's Python example, run as written against real devices; the client's typed results."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import corral
from tests.integration.flows import flowfiles
from tests.integration.flows.conftest import Farm
from tests.serve import cli_env

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[3]


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- python-example -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, "README.md lost its Python example"
    return match.group(1)


def test_the_readme_example_runs_as_written(farm: Farm) -> None:
    assert farm.devices == ["browser-1", "browser-2"]
    result = subprocess.run(
        [sys.executable, "-c", _readme_example()],
        cwd=ROOT,
        env=cli_env(farm.settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "devices: browser-1, browser-2"
    assert lines[1] == "browser-1 passed "
    steps = lines[2:-1]
    # login-check.yaml has 13 top-level steps, each one line, all passed.
    numbers = [re.fullmatch(r"  (\d+)\. .+: passed in \d+\.\d\ds", line) for line in steps]
    assert all(numbers), steps
    assert [int(match.group(1)) for match in numbers if match] == list(range(1, 14))
    assert re.fullmatch(r"ping: \{'pong': [0-9.e+]+\}", lines[-1]), lines[-1]


async def test_run_flow_returns_typed_results(farm: Farm, tmp_path: Path) -> None:
    path = flowfiles.write(tmp_path, "login.yaml", flowfiles.LOGIN)
    async with corral.connect(farm.settings, role="client") as c:
        assert not c.is_host
        results = await c.run_flow(path, devices=farm.devices, env={"USER": "carol"})
        assert [(r.device, r.state, r.error, r.passed) for r in results] == [
            ("browser-1", "passed", None, True),
            ("browser-2", "passed", None, True),
        ]
        steps = results[0].steps
        assert [s.label for s in steps][2] == 'inputText "${USER}"'
        assert steps[-1].screenshot is not None and steps[-1].screenshot.read_bytes()[:4] == b"\x89PNG"
        assert (await c.device("browser-2").info()).name == "browser-2"
        assert set(await c.device("browser-2").command("ping", timeout=5)) == {"pong"}
        with pytest.raises(corral.InvalidRun, match=r"^open_url: url: Field required$"):
            await c.device("browser-2").command("open_url")
        with pytest.raises(corral.FlowError, match=r"no such file"):
            await c.run_flow(tmp_path / "missing.yaml", devices=farm.devices)
