from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from backend.config import Settings
from backend.corral import Corral


@pytest.fixture
async def corral(settings: Settings, docker_available: None) -> AsyncIterator[Corral]:
    instance = await Corral.start(settings, role="host")
    try:
        yield instance
    finally:
        ids = [d.id for d in await instance.devices() if d.state != "removed"]
        if ids:
            await instance.remove(ids)
            await instance.wait_for(ids, {"removed"}, timeout=60)
        await instance.stop()
