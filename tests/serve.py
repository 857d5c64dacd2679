"""Run the real `corral` CLI as a subprocess, e.g. a `corral serve` host, and read its log."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from backend.config import Settings

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def cli_env(settings: Settings, **env: str) -> dict[str, str]:
    return {
        **os.environ,
        "CORRAL_DATABASE_URL": str(settings.database_url),
        "CORRAL_DATA_DIR": str(settings.data_dir),
        "CORRAL_RUNTIME_DIR": str(settings.runtime_dir),
        "CORRAL_DEVICE_NETWORK": "none",
        **env,
    }


def corral(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `corral ARGS` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        env=cli_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@dataclass(frozen=True)
class LogLine:
    at: datetime | None
    text: str


class Serve:
    """`corral -v serve` in the background; its stderr lines collected as they come."""

    def __init__(self, settings: Settings, **env: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "-v", "serve"],
            env=cli_env(settings, **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[LogLine] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            match = _STAMP.match(raw)
            at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f") if match else None
            self.lines.append(LogLine(at, raw.rstrip("\n")))

    def count(self, text: str) -> int:
        return sum(text in line.text for line in list(self.lines))

    def wait_for(self, text: str, *, count: int = 1, timeout: float = 60.0) -> LogLine:
        """Wait until *text* appeared in *count* log lines; return the last such line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if text in line.text]
            if len(found) >= count:
                return found[count - 1]
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        log = "\n".join(line.text for line in self.lines[-40:])
        raise AssertionError(f"{text!r} x{count} not logged by pid {self.pid} within {timeout}s:\n{log}")

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code
