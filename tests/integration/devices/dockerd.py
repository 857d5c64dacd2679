"""A private Docker daemon for tests that stop and start Docker under Corral.

Its own socket, data root, exec root, pidfile, config file and containerd
namespaces, no bridge and no iptables rules (like installer/services.sh starts
one): stopping it never touches the operator's daemon or their containers.
Needs root and ``dockerd`` on the PATH.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import docker
import docker.errors

__all__ = ["PrivateDockerd", "copy_image"]

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 60.0


class PrivateDockerd:
    """``start()`` / ``stop()`` as often as needed on one data root; ``close()`` deletes it all."""

    def __init__(self) -> None:
        # Short: the socket path, and containerd's below the exec root, must fit in 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="crl-dk-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.log_path = self.root / "dockerd.log"
        (self.root / "daemon.json").write_text("{}")
        self._namespace = f"corral-test-{uuid.uuid4().hex[:8]}"
        self._process: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        return [
            "dockerd",
            f"--host={self.host}",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            f"--config-file={self.root / 'daemon.json'}",
            # A system containerd (if any) is shared: keep out of dockerd's namespaces.
            f"--containerd-namespace={self._namespace}",
            f"--containerd-plugins-namespace={self._namespace}-plugins",
            "--bridge=none",
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
        ]

    async def start(self) -> None:
        """Start the daemon and return once it answers a ping (RuntimeError with its log if not)."""
        assert self._process is None, "already running"
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        async with asyncio.timeout(_START_TIMEOUT_S):
            while not await asyncio.to_thread(self._answers):
                if self._process.returncode is not None:
                    raise RuntimeError(f"dockerd exited with {self._process.returncode}:\n{self.log_tail()}")
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """SIGTERM, as a service manager stops it: the daemon stops its containers and exits."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(_STOP_TIMEOUT_S):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise

    async def close(self) -> None:
        """Stop the daemon and delete its data root (after removing every container on it)."""
        if self._process is not None and self._process.returncode is None:
            await asyncio.to_thread(self._remove_all_containers)
        await self.stop()
        await asyncio.to_thread(self._unmount_leftovers)
        await asyncio.to_thread(shutil.rmtree, self.root, True)

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        client = self.client()
        try:
            client.ping()
        except (docker.errors.DockerException, OSError):
            return False
        finally:
            client.close()
        return True

    def _remove_all_containers(self) -> None:
        client = self.client()
        try:
            for container in client.containers.list(all=True):
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
        finally:
            client.close()

    def _unmount_leftovers(self) -> None:
        # A clean shutdown unmounts everything; after a crash, overlay and shm mounts
        # may remain below the root, and rmtree must not walk into them.
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{self.root}/")), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def copy_image(source: docker.DockerClient, target: docker.DockerClient, ref: str) -> None:
    """Stream *ref* from one daemon into another (``docker save | docker load``), blocking."""
    chunks = source.api.get_image(ref)
    target.api.load_image(chunks)


def can_run_dockerd() -> str | None:
    """Why a private dockerd cannot run here, or None."""
    if os.geteuid() != 0:
        return "starting a private dockerd needs root"
    if shutil.which("dockerd") is None:
        return "dockerd is not installed"
    return None
