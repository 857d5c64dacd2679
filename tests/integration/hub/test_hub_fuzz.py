"""Hub fuzz: 10,000 random frames from an authenticated agent over the real unix socket.

Hypothesis draws 100 examples of 100 frames each: random bytes, random text and
JSON, unknown message types, agent-sent commands, results with random ids and with
the ids of another device's pending command, hellos for another device, valid
events (persisted through the real event log into the real Postgres), and one
oversize frame per example. After every frame the fuzzer's barrier (see
:mod:`tests.integration.hub.fake_agent`) proves the hub handled it and collects
the replies, which must be exactly the ones written out for its category; a frame
over 8 MiB must close the connection (1009), and the fuzzer then reconnects.
After every example the other device is checked: its agent was not replaced and
got nothing, its held command is still pending, and a new command round-trips.

The hub runs on its own event loop in a thread (as in the app, debug mode under
``PYTHONASYNCIODEBUG``); Hypothesis drives it from the test's thread. Keepalive
pings are off here: websockets draws their payloads from the global ``random``,
and Hypothesis fails a test whose strategies see that state change (the
keepalive has its own test in test_hub_commands.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from agent.protocol import (
    MAX_FRAME_BYTES,
    MAX_RESULT_BYTES,
    Command,
    ErrorMessage,
    Event,
    Hello,
    Result,
    encode,
)
from backend.config import Settings
from backend.corral import _HubEvents
from backend.db import Database
from backend.devices.store import DeviceStore
from backend.hub import Hub
from backend.hub.eventlog import EventLog
from backend.supervisor import Supervisor
from tests.integration.hub.fake_agent import FakeAgent, hub_settings_for, serve

T = TypeVar("T")

EXAMPLES = 100
FRAMES_PER_EXAMPLE = 100
CLOSED = "closed"
"""Expected outcome of a frame the hub must answer by closing the connection (1009)."""
MESSAGE_TYPES = {"hello", "command", "result", "event", "error"}


@dataclass(frozen=True)
class Frame:
    data: str | bytes
    replies: tuple[str, ...] | str
    """The error codes the hub answers with, in order, or CLOSED."""
    stray: int = 0
    """Results the hub must count as completing nothing."""


class LoopThread:
    """An event loop running in its own thread; :meth:`run` a coroutine on it and wait."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="hub-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


# --- strategies -------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_ids = st.text(min_size=1, max_size=64)


def _small_frames(other_id: str) -> st.SearchStrategy[Frame]:
    invalid = ("invalid_message",)
    return st.one_of(
        st.binary(max_size=300).map(lambda b: Frame(b, ("binary_frame",))),
        # Random text; anything starting like an object is left to the JSON strategies.
        st.text(max_size=300)
        .filter(lambda t: not t.lstrip().startswith("{"))
        .map(lambda t: Frame(t, invalid)),
        # Random JSON: any value, or an object without a type.
        _json.filter(lambda v: not isinstance(v, dict) or "type" not in v).map(
            lambda v: Frame(json.dumps(v), invalid)
        ),
        # Unknown message types.
        st.builds(
            lambda t, rest: Frame(json.dumps({**rest, "type": t}), invalid),
            st.text(max_size=20).filter(lambda t: t not in MESSAGE_TYPES),
            st.dictionaries(st.text(max_size=10), _json, max_size=3),
        ),
        # Known types with missing or wrong fields.
        st.builds(
            lambda t, rest: Frame(json.dumps({"type": t, "surplus": rest}), invalid),
            st.sampled_from(sorted(MESSAGE_TYPES)),
            _json,
        ),
        # Results with random ids, and with the id of the other device's pending command.
        st.builds(
            lambda i, ok, data: Frame(encode(Result(id=i, ok=ok, data=data)), (), stray=1),
            _ids,
            st.booleans(),
            _json,
        ),
        st.builds(
            lambda ok, data: Frame(encode(Result(id=other_id, ok=ok, data=data)), (), stray=1),
            st.booleans(),
            _json,
        ),
        # Hello for another device.
        st.builds(
            lambda d: Frame(encode(Hello(device_id=d, agent_version="fuzz")), ("wrong_device",)),
            st.just("other") | st.text(min_size=1, max_size=64).filter(lambda d: d != "fuzz"),
        ),
        # Agents may not send commands; error messages are accepted silently.
        st.builds(
            lambda i, n: Frame(encode(Command(id=i, name=n)), ("unexpected_command",)),
            _ids,
            st.text(min_size=1, max_size=64),
        ),
        st.builds(
            lambda c, m: Frame(encode(ErrorMessage(code=c, message=m)), ()),
            st.text(max_size=64),
            st.text(max_size=200),
        ),
        # Valid events, stored by the event log.
        st.builds(
            lambda k, d: Frame(encode(Event(kind=k, data=d)), ()),
            st.sampled_from(["log", "state", "screenshot", "metric"]),
            st.dictionaries(st.text(max_size=10), _json, max_size=4),
        ),
    )


_oversize = st.one_of(
    # Between the 1 MiB of ordinary messages and the 8 MiB of results.
    st.integers(MAX_FRAME_BYTES + 1, MAX_RESULT_BYTES - 1000).map(
        lambda n: Frame(encode(Event(kind="log", data={"x": "a" * n})), ("frame_too_large",))
    ),
    st.integers(MAX_FRAME_BYTES + 1, MAX_RESULT_BYTES - 1000).map(
        lambda n: Frame(encode(Result(id="big", ok=True, data="a" * n)), (), stray=1)
    ),
    # Over 8 MiB: the transport closes the connection.
    st.integers(MAX_RESULT_BYTES + 1, MAX_RESULT_BYTES + (1 << 20)).map(
        lambda n: Frame(encode(Result(id="huge", ok=True, data="a" * n)), CLOSED)
    ),
    st.integers(MAX_RESULT_BYTES + 1, MAX_RESULT_BYTES + (1 << 20)).map(lambda n: Frame(b"\x00" * n, CLOSED)),
)


# --- the world ----------------------------------------------------------------------


@dataclass
class World:
    settings: Settings
    database: Database
    log: EventLog
    listener: _HubEvents
    hub: Hub
    other: FakeAgent
    held: asyncio.Task[Result]
    held_id: str
    fuzzer: FakeAgent
    old_fuzzers: list[FakeAgent] = field(default_factory=list)
    sent: int = 0
    errors: int = 0
    strays: int = 0
    closed: int = 0
    other_rounds: int = 0


async def _setup(settings: Settings) -> World:
    database = await Database.open(settings)
    connection = await database.connect_raw()
    await connection.execute(
        "INSERT INTO devices (id, name, kind, state) VALUES ('fuzz', 'fuzz', 'browser', 'ready'),"
        " ('other', 'other', 'browser', 'ready')"
    )
    await connection.close()
    log = EventLog(database, Supervisor())
    log.start()
    listener = _HubEvents(DeviceStore(database), log)
    hub = await serve(settings, ["fuzz", "other"], listener, ping_interval=None)
    other = FakeAgent(settings, hub, "other", ping_interval=None)
    await other.connect()
    held = asyncio.create_task(hub.command("other", "tap", {"held": True}, timeout=3600))
    held_command = await other.next_command()
    fuzzer = FakeAgent(settings, hub, "fuzz", ping_interval=None)
    await fuzzer.connect()
    return World(settings, database, log, listener, hub, other, held, held_command.id, fuzzer)


async def _send(world: World, frame: Frame) -> None:
    world.sent += 1
    if frame.replies == CLOSED:
        with contextlib.suppress(ConnectionClosed):
            await world.fuzzer.send(frame.data)
        assert world.fuzzer.connection is not None
        await asyncio.wait_for(world.fuzzer.connection.wait_closed(), 30)
        assert world.fuzzer.connection.close_code == 1009
        world.closed += 1
        await world.fuzzer.close()
        world.old_fuzzers.append(world.fuzzer)
        world.fuzzer = FakeAgent(world.settings, world.hub, "fuzz", ping_interval=None)
        await world.fuzzer.connect()
        return
    await world.fuzzer.send(frame.data)
    replies = await world.fuzzer.sync(timeout=30)
    assert tuple(reply["code"] for reply in replies) == frame.replies, (frame.data[:200], replies)
    world.errors += len(frame.replies)
    world.strays += frame.stray


async def _check_other(world: World) -> None:
    hub, other = world.hub, world.other
    assert hub.is_connected("other")
    assert hub.replacements["other"] == 0
    assert not world.held.done()
    assert hub.pending_commands("other") == 1
    assert other.replies.empty() and other.commands.empty()
    call = asyncio.create_task(hub.command("other", "ping", {"round": world.other_rounds}))
    command = await other.next_command()
    assert command.args == {"round": world.other_rounds}
    await other.answer(command.id, data={"pong": world.other_rounds})
    assert (await call).data == {"pong": world.other_rounds}
    await other.send(encode(Event(kind="log", data={"message": f"other {world.other_rounds}"})))
    world.other_rounds += 1


async def _finish(world: World) -> dict[str, Any]:
    hub = world.hub
    # The held command is still the other device's own: its agent completes it.
    await world.other.answer(world.held_id, data="held answer")
    held = await asyncio.wait_for(world.held, 5)
    counts = {
        "held": held.data,
        "fuzz_invalid": hub.invalid_frames("fuzz"),
        "fuzz_syncs": world.fuzzer.syncs + sum(agent.syncs for agent in world.old_fuzzers),
        "fuzz_stray": hub.stray_results("fuzz"),
        "other_invalid": hub.invalid_frames("other"),
        "other_syncs": world.other.syncs,
        "other_stray": hub.stray_results("other"),
    }
    # The fuzzed device itself still works.
    call = asyncio.create_task(hub.command("fuzz", "ping", {}))
    await world.fuzzer.answer((await world.fuzzer.next_command()).id, data="fuzz pong")
    counts["fuzz_ping"] = (await call).data
    return counts


async def _teardown(world: World) -> list[str]:
    await world.fuzzer.close()
    await world.other.close()
    await world.hub.stop()
    await world.listener.stop()
    await world.log.stop()
    connection = await world.database.connect_raw()
    try:
        rows = await connection.fetch(
            "SELECT message FROM events WHERE device_id = 'other' AND source = 'agent' ORDER BY id"
        )
    finally:
        await connection.close()
    await world.database.close()
    return [row["message"] for row in rows]


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def test_10000_random_frames_touch_only_their_own_connection(
    short_tmp: Path, database_url: str, loop_thread: LoopThread
) -> None:
    hub_settings = hub_settings_for(short_tmp).model_copy(update={"database_url": database_url})
    world = loop_thread.run(_setup(hub_settings))
    try:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            frames=st.lists(
                _small_frames(world.held_id), min_size=FRAMES_PER_EXAMPLE - 1, max_size=FRAMES_PER_EXAMPLE - 1
            ),
            oversize=_oversize,
            at=st.integers(0, FRAMES_PER_EXAMPLE - 1),
        )
        def fuzz(frames: list[Frame], oversize: Frame, at: int) -> None:
            frames.insert(at, oversize)

            async def example() -> None:
                for frame in frames:
                    await _send(world, frame)
                await _check_other(world)

            loop_thread.run(example())

        fuzz()
        counts = loop_thread.run(_finish(world))
    finally:
        other_messages = loop_thread.run(_teardown(world))
    print(
        f"{world.sent} frames: {world.errors} error replies, {world.strays} stray results, "
        f"{world.closed} connections closed (1009); other device checked {world.other_rounds} times"
    )
    assert world.sent == EXAMPLES * FRAMES_PER_EXAMPLE == 10_000
    assert counts == {
        "held": "held answer",
        "fuzz_invalid": world.errors + counts["fuzz_syncs"],
        "fuzz_syncs": counts["fuzz_syncs"],
        "fuzz_stray": world.strays,
        "other_invalid": 1,  # the barrier when its agent connected
        "other_syncs": 1,
        "other_stray": 0,
        "fuzz_ping": "fuzz pong",
    }
    assert counts["fuzz_syncs"] == world.sent - world.closed + (
        1 + world.closed
    )  # per answered frame, per connect
    # The other device's events all reached Postgres, in order, among the fuzzer's.
    assert other_messages == [f"other {n}" for n in range(EXAMPLES)]
    assert world.log.dropped == 0
