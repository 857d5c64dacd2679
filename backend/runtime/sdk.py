"""The one door to the docker SDK: blocking calls run in a thread, errors are translated.

Every docker SDK call in the runtime goes through :meth:`DockerConnection.call`,
which runs it with ``asyncio.to_thread`` (the event loop is shared with Qt) and
turns docker/requests exceptions into :mod:`backend.runtime.exceptions` with
``raise ... from exc``. Nothing from ``docker`` or ``requests`` escapes.

The client is created lazily, on the first call and inside the worker thread:
the SDK asks the daemon for its API version while connecting, so creating a
connection object never fails and never blocks, even when the daemon is down.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

import docker
import docker.errors
import requests.exceptions

from backend.runtime.exceptions import DeviceRuntimeError, RuntimeUnavailable

__all__ = ["DEFAULT_DOCKER_HOST", "DockerConnection", "translate_error"]

T = TypeVar("T")

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
API_TIMEOUT_S = 60
"""Read timeout of ordinary API calls. Image builds stream without one."""


def _start_hint(url: str) -> str:
    return (
        f"Cannot reach the Docker daemon at {url}. Start it (e.g. `sudo systemctl start docker`), "
        "make sure your user may use it (e.g. the `docker` group), "
        "or point DOCKER_HOST / CORRAL_DOCKER_HOST at a running daemon."
    )


def translate_error(
    exc: BaseException,
    error: type[DeviceRuntimeError],
    action: str,
    url: str,
) -> DeviceRuntimeError:
    """The runtime exception for an SDK failure while doing *action*.

    Transport failures (refused, missing socket, permission denied, no API
    version) become RuntimeUnavailable with a hint on how to start the daemon;
    daemon replies become *error* carrying the daemon's explanation.
    """
    if isinstance(exc, docker.errors.APIError):
        explanation = exc.explanation or str(exc)
        if isinstance(explanation, bytes):
            explanation = explanation.decode("utf-8", "replace")
        return error(f"{action}: {explanation}")
    if isinstance(exc, requests.exceptions.Timeout):
        return error(f"{action}: the Docker daemon at {url} did not answer in time")
    if isinstance(exc, requests.exceptions.RequestException | ConnectionError):
        return RuntimeUnavailable(f"{_start_hint(url)} ({exc})")
    if isinstance(exc, docker.errors.DockerException):
        # Raised while connecting (no API version) or for a malformed DOCKER_HOST.
        return RuntimeUnavailable(f"{_start_hint(url)} ({exc})")
    return error(f"{action}: {exc}")


def _probe_unix_socket(path: str) -> None:
    """Connect once to the daemon's socket; raise OSError if nobody listens.

    The SDK leaks its socket when a unix connect fails (a ResourceWarning per
    attempt); probing first with a socket we close keeps that out of our calls.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5.0)
        probe.connect(path)


class DockerConnection:
    """A lazily connected docker client whose calls run off the event loop.

    Thread-safe: calls may run concurrently in the default executor.
    """

    def __init__(self, docker_host: str | None = None, timeout: int = API_TIMEOUT_S) -> None:
        self._docker_host = docker_host
        self._timeout = timeout
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The daemon's address as configured (for messages)."""
        return self._docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST

    def client(self) -> docker.DockerClient:
        """The connected client. Blocks (it may talk to the daemon): call it in a thread.

        Raises docker/requests exceptions; :meth:`call` translates them.
        """
        if self.url.startswith("unix://"):
            # Every call, not just the first: the daemon may have gone away since
            # (restart), and the SDK would leak a socket per failed connect.
            _probe_unix_socket(self.url.removeprefix("unix://"))
        with self._lock:
            if self._client is None:
                environment = dict(os.environ)
                if self._docker_host:
                    environment["DOCKER_HOST"] = self._docker_host
                # from_env also honours DOCKER_TLS_VERIFY and DOCKER_CERT_PATH.
                self._client = docker.from_env(environment=environment, timeout=self._timeout)
            return self._client

    async def call(
        self,
        fn: Callable[[docker.DockerClient], T],
        *,
        error: type[DeviceRuntimeError],
        action: str,
    ) -> T:
        """Run ``fn(client)`` in a thread; raise RuntimeUnavailable or *error* on failure.

        *action* names what was being done, for the message ("start container x").
        Cancelling the await does not stop the thread; the call runs to its end.
        """
        return await asyncio.to_thread(self.call_blocking, fn, error=error, action=action)

    def call_blocking(
        self,
        fn: Callable[[docker.DockerClient], T],
        *,
        error: type[DeviceRuntimeError],
        action: str,
    ) -> T:
        """:meth:`call` for code that already runs in a worker thread."""
        try:
            client = self.client()
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise RuntimeUnavailable(f"{_start_hint(self.url)} ({exc})") from exc
        try:
            return fn(client)
        except DeviceRuntimeError:
            raise
        except requests.exceptions.ConnectionError as exc:
            # The daemon went away mid-call: drop the pool so its dead sockets close now.
            self.close()
            raise translate_error(exc, error, action, self.url) from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise translate_error(exc, error, action, self.url) from exc

    def close(self) -> None:
        """Close the client's connection pool. Blocking but quick."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
