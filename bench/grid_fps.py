"""Live grid benchmark: real frames per pane, CPU and memory of the app tree.

    DISPLAY=:99 .venv/bin/python bench/grid_fps.py [--panes 4 16] [--seconds 20]
        [--source containers|xvnc]

Sources (``--source``):

- ``containers`` (default): real browser devices, provisioned through
  ``backend.api.Corral`` (a host Corral on a throw-away embedded Postgres, run
  on its own thread and loop, network ``none``) with ``CORRAL_ANIMATE=1`` and
  ``CORRAL_SCREEN=<--size>x24`` (default 480x360). The device's start page then
  animates at ``--source-fps`` (``CORRAL_ANIMATE_FPS``, default 30): balls
  bouncing over the page, only what moved repainted, as on a live app screen,
  and each frame's number as 16 cells of 16x16 px at the top-left (white = bit
  set, lowest bit first).
  Streams come from ``Corral.pane_url``: the real stream proxy to each
  device's ``vnc.sock``. ``--device-page paced`` shows the xvnc path's paced
  page instead (``CORRAL_START_URL``), for a like-for-like comparison.
  Devices run with ``CORRAL_DEVICE_CPUS``
  (``--device-cpus``, default 1.0) and, with ``--device-shares``, a lower
  CPU weight (``docker update --cpu-shares``; see the note it prints).
- ``xvnc``: one host TigerVNC ``Xvnc`` display per pane (default 320x240),
  each running Chromium with the bench's own animated page, paced to
  ``--source-fps``, with the frame number as a 16-bit barcode along the top
  edge, behind the real stream proxy (``backend.stream.StreamProxy``). With
  ``--animator x11`` each display runs ``bench/x11_animator.py`` instead (the
  same barcode and moving boxes, for a fraction of Chromium's CPU): on a
  2-core box sixteen animating Chromiums alone take more than the machine, so
  this is how the grid's own limit at 16 distinct streams shows.

The panes ask for raw pixels (``--encoding raw``, the app's default for local
streams) or Tight/JPEG (``--encoding tight``, with ``--quality`` and
``--compression``).

What is counted:

- **source fps** (baseline, same run, no noVNC): a minimal RFB client per
  source (raw encoding, only the barcode strip) counts distinct counter values:
  once with the sources alone, and again in a separate process *during* the
  grid window, i.e. what the sources actually delivered meanwhile. The ratio
  is pane fps / source fps during the run.
- **pane fps**: the grid page (one QWebEngineView, one noVNC canvas per pane)
  decodes the barcode from each pane's framebuffer at every display flip and
  counts flips whose counter changed, i.e. real frames, not flips (Xvnc
  re-sends regions losslessly after JPEG updates; those flips are printed but
  not counted). With ``--page-stats`` the page's own changed-frame counter
  (``GridView.set_frame_stats``) runs too, as a cross-check (it costs CPU, so
  it is off for the CPU figure). Results come back over QWebChannel.
- **CPU**: utime+stime of the app process tree (this process, its
  QtWebEngineProcess children and the stream proxy; with containers also the
  backend's thread and the embedded Postgres, as in the app; not the sources,
  not the direct counter) over the window, in % of one core, with a
  per-thread/process breakdown; the whole machine's busy % and load average
  for context (on a shared box other work shows up there).
- **memory**: PSS (``/proc/<pid>/smaps_rollup``) summed over the app tree, with
  the grid page loaded but empty, and with all panes; per pane = the increase
  divided by the panes.

``--sources K`` feeds the panes from K sources round-robin (the grid's work is
the same, the sources' CPU shrinks): on a 2-core box 16 Chromium sources alone
take most of the CPU, so this separates "the viewer keeps up" from "the box is
full".

Prints one table per pane count and the targets (4 panes >= 28 fps each,
16 panes >= 25 fps each with light sources, see :func:`fps_target`; <= 40 MB per
pane), and exits 1 when one is missed (see bench/report.py). Quick run:
``--panes 4 --seconds 5 --baseline-seconds 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.environment import configure_qt_environment  # noqa: E402
from bench.report import Report  # noqa: E402

configure_qt_environment()
from PySide6.QtWebEngineWidgets import QWebEngineView  # noqa: E402, F401

from app.widgets.grid_view import DEFAULT_COMPRESSION, DEFAULT_QUALITY  # noqa: E402

BARCODE_BITS = 16
BARCODE_HEIGHT = 16
DEVICE_CELL = 16
"""The device start page's barcode: 16 cells of 16x16 px from the top-left corner."""
TARGETS = {4: 28.0, 16: 25.0}
TARGET_MB_PER_PANE = 40.0
T = TypeVar("T")


# -- the animated source page ------------------------------------------------------


def animated_page(width: int, height: int, fps: float) -> str:
    """Moving shapes + frame counter (text and barcode), one new frame every 1/fps s."""
    block = width // BARCODE_BITS
    return f"""<!doctype html><html><body style="margin:0;background:#111;overflow:hidden;cursor:none">
<canvas id="c" width="{width}" height="{height}"></canvas>
<script>
const W = {width}, H = {height}, BITS = {BARCODE_BITS}, BW = {block}, BH = {BARCODE_HEIGHT};
const ctx = document.getElementById("c").getContext("2d");
const colours = ["#e74c3c", "#2ecc71", "#3498db", "#f1c40f", "#9b59b6", "#1abc9c"];
const period = 1000 / {fps};
let frame = 0, next = 0;
function draw(now) {{
  requestAnimationFrame(draw);
  if (now < next - 4) return;  // due a little early rather than one refresh late
  next = Math.max(next + period, now - period);
  frame = (frame + 1) & 0xffff;
  ctx.fillStyle = "#1b1f24";
  ctx.fillRect(0, BH, W, H - BH);
  for (let i = 0; i < colours.length; i++) {{
    const x = (frame * (2 + i) + i * 53) % (W + 40) - 20;
    const y = BH + 16 + ((i * 37 + frame * (1 + (i % 3))) % (H - BH - 40));
    ctx.fillStyle = colours[i];
    ctx.beginPath();
    ctx.arc(x, y, 12 + 2 * i, 0, 2 * Math.PI);
    ctx.fill();
  }}
  ctx.fillStyle = "#ffffff";
  ctx.font = "bold 24px sans-serif";
  ctx.fillText(String(frame), 8, H - 10);
  for (let b = 0; b < BITS; b++) {{
    ctx.fillStyle = (frame >> b) & 1 ? "#ffffff" : "#000000";
    ctx.fillRect(b * BW, 0, BW, BH);
  }}
}}
requestAnimationFrame(draw);
</script></body></html>"""


def decode_barcode(row: bytes, width: int, bytes_per_pixel: int = 4, green_offset: int = 1) -> int:
    block = width // BARCODE_BITS
    value = 0
    for bit in range(BARCODE_BITS):
        x = bit * block + block // 2
        if row[x * bytes_per_pixel + green_offset] > 128:
            value |= 1 << bit
    return value


# -- baseline: a direct RFB client, no noVNC --------------------------------------------


async def _direct_count(socket_path: Path, seconds: float, width: int) -> float:
    """Distinct barcode values per second seen by a raw-encoding RFB 3.8 client.

    *width* is the barcode's width in pixels (16 cells from x = 0).
    """
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    try:
        await reader.readexactly(12)
        writer.write(b"RFB 003.008\n")
        count = (await reader.readexactly(1))[0]
        types = await reader.readexactly(count)
        if 1 not in types:
            raise RuntimeError(f"{socket_path}: no 'None' security type offered ({list(types)})")
        writer.write(b"\x01")
        if struct.unpack(">I", await reader.readexactly(4))[0] != 0:
            raise RuntimeError(f"{socket_path}: security handshake failed")
        writer.write(b"\x01")  # shared
        fb_width, _fb_height = struct.unpack(">HH", await reader.readexactly(4))
        await reader.readexactly(16)
        name_length = struct.unpack(">I", await reader.readexactly(4))[0]
        await reader.readexactly(name_length)
        # 32 bpp, depth 24, little endian, true colour, 8 bits per channel: B G R X.
        writer.write(struct.pack(">B3xBBBBHHHBBB3x", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))
        writer.write(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: raw only
        strip = (0, 0, min(width, fb_width), BARCODE_HEIGHT)
        row_y = BARCODE_HEIGHT // 2
        pixels = bytearray(strip[2] * 4)
        # Two requests in flight, so a round trip never idles the server.
        writer.write(struct.pack(">BBHHHH", 3, 0, *strip))
        writer.write(struct.pack(">BBHHHH", 3, 1, *strip))
        await writer.drain()

        values: set[int] = set()
        last = -1
        changes = 0
        started: float | None = None
        deadline = float("inf")
        while time.monotonic() < deadline:
            message = (await reader.readexactly(1))[0]
            if message == 0:  # FramebufferUpdate
                await reader.readexactly(1)
                (rects,) = struct.unpack(">H", await reader.readexactly(2))
                for _ in range(rects):
                    x, y, w, h, encoding = struct.unpack(">HHHHi", await reader.readexactly(12))
                    if encoding != 0:
                        raise RuntimeError(f"unexpected encoding {encoding}")
                    data = await reader.readexactly(w * h * 4)
                    if y <= row_y < y + h:
                        offset = (row_y - y) * w * 4
                        pixels[x * 4 : (x + w) * 4] = data[offset : offset + w * 4]
                value = decode_barcode(bytes(pixels), strip[2])
                if value != last:
                    last = value
                    if started is not None:
                        changes += 1
                        values.add(value)
                if started is None:
                    started = time.monotonic()
                    deadline = started + seconds
                writer.write(struct.pack(">BBHHHH", 3, 1, *strip))
                await writer.drain()
            elif message == 1:  # SetColourMapEntries
                _, _, n = struct.unpack(">BHH", await reader.readexactly(5))
                await reader.readexactly(n * 6)
            elif message == 2:  # Bell
                pass
            elif message == 3:  # ServerCutText
                await reader.readexactly(3)
                (length,) = struct.unpack(">I", await reader.readexactly(4))
                await reader.readexactly(length)
            else:
                raise RuntimeError(f"unexpected server message {message}")
        return changes / seconds
    finally:
        writer.close()


async def direct_fps(sockets: dict[str, Path], seconds: float, width: int) -> dict[str, float]:
    results = await asyncio.gather(*(_direct_count(path, seconds, width) for path in sockets.values()))
    return dict(zip(sockets, results, strict=True))


# -- where the panes' streams come from ------------------------------------------------


@dataclass
class Source:
    """One streaming device: its id (for pane URLs), VNC socket and host processes (if any)."""

    device_id: str
    socket_path: Path
    pids: list[int] = field(default_factory=list)


class Sources(Protocol):
    kind: str
    barcode_width: int
    """Pixels from x = 0 that hold the 16-bit frame counter."""
    animating_fps: float
    """Direct-client fps from which the sources count as animating."""

    def start(self, count: int, args: argparse.Namespace) -> list[Source]: ...

    def pane_url(self, device_id: str) -> str: ...

    def stop_sources(self, sources: list[Source]) -> None: ...

    def describe(self, args: argparse.Namespace) -> str: ...

    def close(self) -> None: ...


class XvncSources:
    """Host Xvnc + Chromium displays with the bench's paced page (``tests.gui.farm``)."""

    kind = "xvnc"

    def __init__(self, args: argparse.Namespace) -> None:
        from tests.gui.farm import StreamFarm

        self._farm = StreamFarm().start()
        self.barcode_width = args.size[0]
        self.animating_fps = args.source_fps / 2

    def start(self, count: int, args: argparse.Namespace) -> list[Source]:
        width, height = args.size
        ids = [f"src-{i:02d}" for i in range(count)]
        if args.animator == "x11":
            animator = [sys.executable, str(ROOT / "bench" / "x11_animator.py"), str(width), str(height)]
            started = self._farm.add_many(
                dict.fromkeys(ids, ""), width, height, args.source_nice, [*animator, f"{args.source_fps:g}"]
            )
        else:
            page = animated_page(width, height, args.source_fps)
            started = self._farm.add_many(dict.fromkeys(ids, page), width, height, args.source_nice)
        return [Source(s.device_id, s.socket_path, list(s.pids)) for s in started]

    def pane_url(self, device_id: str) -> str:
        return self._farm.pane_url(device_id)

    def stop_sources(self, sources: list[Source]) -> None:
        for source in sources:
            self._farm.remove(source.device_id)

    def describe(self, args: argparse.Namespace) -> str:
        width, height = args.size
        client = "a light X11 animator" if args.animator == "x11" else "Chromium"
        return f"host Xvnc {width}x{height} + {client} @ {args.source_fps:g} fps, nice {args.source_nice}"

    def close(self) -> None:
        self._farm.stop()


class ContainerSources:
    """Real browser devices provisioned through ``Corral``, which runs on its own thread and loop.

    The Corral is a host on a fresh embedded Postgres in a temporary directory
    (removed with everything else by ``close``); devices get network ``none``.
    """

    kind = "containers"

    def __init__(self, args: argparse.Namespace) -> None:
        from backend.api import Corral, Settings

        self._paced = args.device_page == "paced"
        self.barcode_width = args.size[0] if self._paced else BARCODE_BITS * DEVICE_CELL
        self.animating_fps = args.source_fps / 2
        # Short: unix socket paths must stay under 108 bytes.
        self._root = Path(tempfile.mkdtemp(prefix="cgb-", dir="/tmp"))
        os.chmod(self._root, 0o711)
        self.settings = Settings(
            data_dir=self._root / "data",
            runtime_dir=self._root / "run",
            device_network="none",
            device_cpus=args.device_cpus,
            job_concurrency=8,
            boot_timeout=180.0,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="corral-backend", daemon=True)
        self._thread.start()
        self._shares = args.device_shares
        try:
            self.corral = self._run(Corral.start(self.settings, role="host"), timeout=120)
            self._run(self.corral.runtime.ensure_image("browser"), timeout=1800)
        except BaseException:
            self._close_loop()
            raise

    def start(self, count: int, args: argparse.Namespace) -> list[Source]:
        width, height = args.size
        env = {
            "CORRAL_ANIMATE": "1",
            "CORRAL_ANIMATE_FPS": f"{args.source_fps:g}",
            "CORRAL_SCREEN": f"{width}x{height}x24",
        }
        if self._paced:
            page = animated_page(width, height, args.source_fps)
            env["CORRAL_START_URL"] = "data:text/html;charset=utf-8," + urllib.parse.quote(page)
        devices = self._run(self.corral.provision("browser", count, env=env))
        ids = [device.id for device in devices]
        final = self._run(self.corral.wait_for(ids, {"ready"}, timeout=300), timeout=330)
        failed = {d.name: d.reason for d in final if d.state != "ready"}
        if failed:
            raise RuntimeError(f"devices did not come up: {failed}")
        if self._shares:
            self._set_cpu_shares(ids, self._shares)
        return [Source(i, self.settings.device_dir(i) / "vnc.sock") for i in ids]

    def pane_url(self, device_id: str) -> str:
        return self.corral.pane_url(device_id)

    def stop_sources(self, sources: list[Source]) -> None:
        ids = [source.device_id for source in sources]
        self._run(self.corral.remove(ids))
        self._run(self.corral.wait_for(ids, {"removed"}, timeout=120), timeout=150)

    def describe(self, args: argparse.Namespace) -> str:
        width, height = args.size
        shares = f", cpu-shares {self._shares}" if self._shares else ""
        page = "the bench's page" if self._paced else "CORRAL_ANIMATE=1 start page"
        page += f" @ {args.source_fps:g} fps"
        return (
            f"browser devices (containers, CORRAL_SCREEN={width}x{height}x24, {page}, "
            f"{args.device_cpus:g} CPU each{shares})"
        )

    def close(self) -> None:
        try:
            leftover = [d.id for d in self._run(self.corral.devices())]
            if leftover:
                self._run(self.corral.remove(leftover))
                self._run(self.corral.wait_for(leftover, {"removed"}, timeout=120), timeout=150)
        finally:
            try:
                self._run(self.corral.stop())
            finally:
                self._close_loop()

    def _set_cpu_shares(self, device_ids: list[str], shares: int) -> None:
        import docker

        client = docker.from_env()
        try:
            for device_id in device_ids:
                for container in client.containers.list(filters={"label": f"corral.device={device_id}"}):
                    container.update(cpu_shares=shares)
        finally:
            client.close()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _close_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()
        shutil.rmtree(self._root, ignore_errors=True)


def cpu_weight_note() -> str:
    """Where the devices' CPU weight stands against the app's, on this host."""
    own = Path("/proc/self/cgroup").read_text().splitlines()
    cpu_line = next((line for line in own if ":cpu:" in line or ":cpu," in line), "")
    docker_shares = Path("/sys/fs/cgroup/cpu/docker/cpu.shares")
    if cpu_line and docker_shares.exists():
        return (
            f"cgroup v1: the app runs in cpu cgroup '{cpu_line.rsplit(':', 1)[1]}', the devices in "
            f"'/docker/<id>' under /docker (cpu.shares {docker_shares.read_text().strip()}): all devices "
            "together weigh as much as one busy nice-0 app thread; --device-shares only shifts weight "
            "between containers"
        )
    return "cgroup v2: device weights (--device-shares) count against their siblings in the docker slice"


# -- process tree accounting ----------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry))
    return tree


def app_tree(root: int, exclude: Iterable[int]) -> list[int]:
    """*root* and its descendants, minus the subtrees rooted at *exclude* (the sources)."""
    skip = set(exclude)
    tree = _children()
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in skip:
            continue
        found.append(pid)
        stack.extend(tree.get(pid, []))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def cpu_by_name(pids: Iterable[int]) -> dict[str, float]:
    """CPU seconds by role: this process's threads by name, children by process name."""
    ticks = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    totals: dict[str, float] = {}
    for pid in pids:
        if pid == me:
            for task in Path(f"/proc/{pid}/task").iterdir():
                try:
                    name = "app:" + (task / "comm").read_text().strip()
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
            continue
        name = process_name(pid)
        name = "stream-proxy" if name.startswith("python") else name
        totals[name] = totals.get(name, 0.0) + cpu_seconds([pid])
    return totals


def pss_mb(pids: Iterable[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
                    break
        except OSError:
            continue
    return total_kb / 1024


def machine_busy() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


# -- Qt helpers -----------------------------------------------------------------------


def spin(ms: int) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        spin(50)


def evaluate(view: Any, script: str, timeout: float = 10.0) -> Any:
    box: list[Any] = []
    view.evaluate(script, box.append)
    wait_for(lambda: bool(box), timeout, "the grid page to answer")
    return box[0]


BARCODE_PROBE = """
(() => {
  const W = %(width)d, BITS = %(bits)d, BW = Math.floor(W / BITS), ROW = %(row)d;
  window.benchCounts = {};
  for (const id of corralGrid.paneIds()) {
    const display = corralGrid.rfb(id)._display;
    const inner = display.flip;
    const counts = window.benchCounts[id] = { frames: 0, flips: 0, last: -1 };
    display.flip = (fromQueue) => {
      const queued = display._renderQ.length !== 0 && !fromQueue;
      inner.call(display, fromQueue);
      if (queued || display.width < W) return;
      counts.flips += 1;
      const row = display._drawCtx.getImageData(0, ROW, W, 1).data;
      let value = 0;
      for (let bit = 0; bit < BITS; bit++) {
        if (row[(bit * BW + (BW >> 1)) * 4 + 1] > 128) value |= 1 << bit;
      }
      if (value !== counts.last) { counts.frames += 1; counts.last = value; }
    };
  }
  return corralGrid.paneIds().length;
})()
"""

SNAPSHOT = "JSON.stringify({counts: window.benchCounts, stats: corralGrid.stats(), time: performance.now()})"


# -- one run ---------------------------------------------------------------------------


@dataclass
class RunResult:
    panes: int
    columns: int
    sources: int
    source_fps_alone: dict[str, float]
    source_fps: dict[str, float]
    pane_fps: dict[str, float]
    page_fps: dict[str, float]
    flips_per_s: dict[str, float]
    cpu_percent: float
    cpu_breakdown: dict[str, float]
    machine_percent: float
    pss_empty_mb: float
    pss_full_mb: float
    pss_webengine_mb: float
    notes: list[str] = field(default_factory=list)


def run_once(provider: Sources, panes: int, seconds: float, args: argparse.Namespace) -> RunResult:
    from app.widgets.grid_view import GridView

    barcode = provider.barcode_width
    columns = {1: 1, 4: 2, 9: 3, 16: 4}.get(panes, 4)
    source_count = min(panes, args.sources or panes)
    ids = [f"bench-{i:02d}" for i in range(panes)]
    print(
        f"\n== {panes} panes ({columns}x{columns}) on {source_count} {provider.describe(args)}; "
        f"encoding {args.encoding} (quality {args.quality}, compression {args.compression}); "
        f"load average {_loadavg()} =="
    )
    started = time.monotonic()
    sources = provider.start(source_count, args)
    source_of = {pane: sources[i % source_count].device_id for i, pane in enumerate(ids)}
    source_pids = [pid for source in sources for pid in source.pids]
    sockets = {s.device_id: s.socket_path for s in sources}
    print(f"sources up {time.monotonic() - started:.1f} s after the request")
    deadline = time.monotonic() + 90
    while min(asyncio.run(direct_fps(sockets, 1.0, barcode)).values()) < provider.animating_fps:
        if time.monotonic() > deadline:
            raise TimeoutError("the sources did not start animating within 90 s")
    print(f"sources animating {time.monotonic() - started:.1f} s after the request; warming up")
    time.sleep(args.warmup)
    alone = asyncio.run(direct_fps(sockets, args.baseline_seconds, barcode))
    print(
        f"sources alone (direct RFB client, no grid): median {statistics.median(alone.values()):.1f} fps, "
        f"min {min(alone.values()):.1f}"
    )

    view = GridView(encoding=args.encoding, quality=args.quality, compression=args.compression)
    view.set_url_provider(lambda pane, _scope: provider.pane_url(source_of[pane]))
    view.resize(*args.view)
    view.set_layout(columns)
    view.show()
    wait_for(view.is_ready, 30, "the grid page")
    spin(1500)
    me = os.getpid()
    pss_empty = pss_mb(app_tree(me, source_pids))

    view.set_frame_stats(args.page_stats)
    for pane in ids:
        view.add_pane(pane, pane, "ready")
    wait_for(lambda: all(view.is_connected(i) for i in ids), 60, "all panes to connect")
    spin(1000)
    evaluate(view, BARCODE_PROBE % {"width": barcode, "bits": BARCODE_BITS, "row": BARCODE_HEIGHT // 2})
    stepper = _step_overlays(view, ids) if args.flow_overlays else None
    spin(int(args.warmup * 1000))

    # The direct clients keep counting during the window: what the sources
    # delivered while the grid ran (the grid cannot show more than that).
    counter = subprocess.Popen(
        [sys.executable, __file__, "--direct-count", str(seconds), str(barcode), *map(str, sockets.values())],
        stdout=subprocess.PIPE,
        text=True,
    )
    excluded = [*source_pids, counter.pid]
    tree = app_tree(me, excluded)
    cpu0, busy0, t0 = cpu_seconds(tree), machine_busy(), time.monotonic()
    names0 = cpu_by_name(tree)
    first = json.loads(evaluate(view, SNAPSHOT))
    spin(int(seconds * 1000))
    last = json.loads(evaluate(view, SNAPSHOT))
    tree = app_tree(me, excluded)
    cpu1, busy1, t1 = cpu_seconds(tree), machine_busy(), time.monotonic()
    names1 = cpu_by_name(tree)
    breakdown = {
        name: 100 * (value - names0.get(name, 0.0)) / (t1 - t0) for name, value in sorted(names1.items())
    }
    pss_full = pss_mb(tree)
    pss_webengine = pss_mb(pid for pid in tree if process_name(pid).startswith("QtWebEngine"))
    output, _ = counter.communicate(timeout=seconds + 30)
    during = dict(zip(sockets, json.loads(output), strict=True))

    elapsed = (last["time"] - first["time"]) / 1000
    pane_fps = {i: (last["counts"][i]["frames"] - first["counts"][i]["frames"]) / elapsed for i in ids}
    flips = {i: (last["counts"][i]["flips"] - first["counts"][i]["flips"]) / elapsed for i in ids}
    page_fps = {}
    if args.page_stats:
        page_fps = {i: (last["stats"][i]["frames"] - first["stats"][i]["frames"]) / elapsed for i in ids}
    machine = 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    result = RunResult(
        panes=panes,
        columns=columns,
        sources=source_count,
        source_fps_alone=alone,
        source_fps=during,
        pane_fps=pane_fps,
        page_fps=page_fps,
        flips_per_s=flips,
        cpu_percent=100 * (cpu1 - cpu0) / (t1 - t0),
        cpu_breakdown=breakdown,
        machine_percent=machine,
        pss_empty_mb=pss_empty,
        pss_full_mb=pss_full,
        pss_webengine_mb=pss_webengine,
    )
    if args.screenshot:
        path = Path(args.screenshot).with_suffix(f".{panes}-{source_count}.png")
        view.grab().save(str(path))
        result.notes.append(f"screenshot: {path}")

    if stepper is not None:
        stepper.stop()
        result.notes.append("every pane showed a flow overlay whose step changed once a second")
    view.close()
    view.deleteLater()
    spin(500)
    provider.stop_sources(sources)
    return result


def _step_overlays(view: Any, ids: list[str]) -> Any:
    """Give every pane a running flow overlay whose step changes once a second (as a flow does)."""
    from PySide6.QtCore import QTimer

    step = [0]

    def advance() -> None:
        step[0] += 1
        for pane in ids:
            overlay = {
                "state": "running",
                "position": f"{step[0] % 20 + 1}/20",
                "text": f'tapOn text "Step {step[0]}"',
            }
            view.set_pane_flow(pane, json.dumps(overlay))

    advance()
    timer = QTimer()
    timer.setInterval(1000)
    timer.timeout.connect(advance)
    timer.start()
    return timer


def fps_target(panes: int, sources: int, args: argparse.Namespace) -> float | None:
    """The pane fps target of this run, or None where the box, not the grid, is the limit.

    4 panes >= 28 fps each; 16 panes >= 25 fps each only with light sources
    (``--source xvnc --animator x11``, or at most 4 distinct sources): sixteen
    animating Chromiums alone take more than a 2-core box (see README).
    """
    target = TARGETS.get(panes)
    if target is None or panes <= 4:
        return target
    light = (args.source == "xvnc" and args.animator == "x11") or sources <= 4
    return target if light else None


def record(report: Report, result: RunResult, args: argparse.Namespace) -> None:
    """Print the run's table and record its figures (keys prefixed ``p<panes>_``)."""

    def summary(values: dict[str, float]) -> str:
        data = list(values.values())
        return f"min {min(data):5.1f}  median {statistics.median(data):5.1f}  max {max(data):5.1f}"

    per_pane = (result.pss_full_mb - result.pss_empty_mb) / result.panes
    pane_min = min(result.pane_fps.values())
    key = f"p{result.panes}_"
    print(f"source fps, alone       {summary(result.source_fps_alone)}")
    print(f"source fps, during run  {summary(result.source_fps)}   (direct RFB client, no noVNC)")
    print(f"pane fps (real frames)  {summary(result.pane_fps)}")
    if result.page_fps:
        print(f"page's own frame count  {summary(result.page_fps)}")
    print(f"flips per pane          {summary(result.flips_per_s)}")
    shown = sorted(result.cpu_breakdown.items(), key=lambda item: -item[1])
    parts = ", ".join(f"{name} {value:.0f} %" for name, value in shown if value >= 1)
    print(f"CPU by process: {parts}")
    print(
        f"PSS app tree: {result.pss_empty_mb:.0f} MB empty page, {result.pss_full_mb:.0f} MB with "
        f"{result.panes} panes (QtWebEngine processes {result.pss_webengine_mb:.0f} MB)"
    )
    target = fps_target(result.panes, result.sources, args)
    if target is None and result.panes in TARGETS:
        print(
            f"no fps target for {result.panes} panes on {result.sources} heavy sources: they exceed this box "
            "on their own (use --source xvnc --animator x11 for the grid's own limit)"
        )
    report.figure(
        key + "pane_fps_min",
        pane_min,
        "fps",
        target=target,
        better="higher",
        label=f"{result.panes} panes: slowest pane (real frames)",
    )
    report.figure(
        key + "pane_fps_median",
        statistics.median(result.pane_fps.values()),
        "fps",
        label=f"{result.panes} panes: median pane",
    )
    report.figure(
        key + "source_fps_median",
        statistics.median(result.source_fps.values()),
        "fps",
        label=f"{result.panes} panes: sources during the run, median (baseline, direct RFB client)",
    )
    report.ratio(
        key + "pane_vs_source",
        statistics.median(result.pane_fps.values()),
        statistics.median(result.source_fps.values()),
        label=f"{result.panes} panes: ratio pane / source fps (median)",
    )
    report.figure(
        key + "cpu_percent",
        result.cpu_percent,
        "%",
        label=f"{result.panes} panes: CPU of the app tree, of one core (machine busy "
        f"{result.machine_percent:.0f} % of {os.cpu_count()} cores, load {_loadavg()})",
    )
    report.figure(
        key + "mb_per_pane",
        per_pane,
        "MB",
        target=TARGET_MB_PER_PANE,
        label=f"{result.panes} panes: PSS increase per pane",
    )
    report.detail(f"run_{result.panes}", result.__dict__)
    for note in result.notes:
        print(note)


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return f"load average {_loadavg()}"


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--direct-count"]:
        seconds, width, paths = float(argv[1]), int(argv[2]), [Path(p) for p in argv[3:]]
        sockets = {str(i): path for i, path in enumerate(paths)}
        print(json.dumps(list(asyncio.run(direct_fps(sockets, seconds, width)).values())))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--panes", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per run")
    parser.add_argument("--baseline-seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--source",
        choices=("containers", "xvnc"),
        default="containers",
        help="real browser devices through Corral (default), or host Xvnc + Chromium",
    )
    parser.add_argument(
        "--size", type=_size, help="source screen, WxH (default 480x360 containers, 320x240 xvnc)"
    )
    parser.add_argument(
        "--source-fps",
        type=float,
        default=30.0,
        help="the sources' frame rate (the bench's page, or CORRAL_ANIMATE_FPS for the start page)",
    )
    parser.add_argument(
        "--device-page",
        choices=("start", "paced"),
        default="start",
        help="containers: the image's start page with CORRAL_ANIMATE=1 (moving balls, default), or the "
        "xvnc path's page, which repaints the whole screen every frame (via CORRAL_START_URL)",
    )
    parser.add_argument(
        "--sources",
        type=int,
        default=0,
        help="distinct sources per run (default: one per pane); fewer sources are shared round-robin, "
        "which keeps the grid's work the same and takes the sources' CPU out of the way",
    )
    parser.add_argument(
        "--encoding", choices=("raw", "tight"), default="raw", help="what the panes ask devices for first"
    )
    parser.add_argument(
        "--animator",
        choices=("chromium", "x11"),
        default="chromium",
        help="xvnc: what animates each display: Chromium with the bench's page, or bench/x11_animator.py "
        "(a fraction of Chromium's CPU: shows the grid's own limit when 16 Chromiums would fill the box)",
    )
    parser.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="noVNC qualityLevel (tight)")
    parser.add_argument("--compression", type=int, default=DEFAULT_COMPRESSION, help="noVNC compressionLevel")
    parser.add_argument("--source-nice", type=int, default=0, help="xvnc: nice value for the sources")
    parser.add_argument(
        "--device-cpus", type=float, default=1.0, help="containers: CPU limit per device (CORRAL_DEVICE_CPUS)"
    )
    parser.add_argument(
        "--device-shares",
        type=int,
        default=0,
        help="containers: docker cpu-shares per device (default: Docker's 1024); see the printed note",
    )
    parser.add_argument("--view", type=_size, default=(1440, 900), help="grid view size, WxH")
    parser.add_argument(
        "--page-stats",
        action="store_true",
        help="also run the page's own changed-frame counter (cross-check; costs CPU)",
    )
    parser.add_argument(
        "--flow-overlays",
        action="store_true",
        help="every pane shows a flow overlay whose step changes once a second (its compositing cost)",
    )
    parser.add_argument("--screenshot", help="save a grab of the grid to PATH.<panes>.png")
    parser.add_argument("--json", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY"):
        print("needs an X display (e.g. Xvfb :99 and DISPLAY=:99)", file=sys.stderr)
        return 2

    if args.size is None:
        args.size = (480, 360) if args.source == "containers" else (320, 240)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    print(f"load before: {_uptime()}")
    provider: Sources = ContainerSources(args) if args.source == "containers" else XvncSources(args)
    if args.source == "containers":
        print(f"CPU weight: {cpu_weight_note()}")
    report = Report("grid_fps")
    report.detail("source", provider.describe(args))
    try:
        for panes in args.panes:
            record(report, run_once(provider, panes, args.seconds, args), args)
    finally:
        provider.close()
    print(f"load after: {_uptime()}")
    del app
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
