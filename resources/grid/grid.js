// The live grid page: one noVNC RFB canvas per device pane, laid out in a CSS grid.
//
// Qt owns the state; this page mirrors it. Qt talks to the page through the
// signals of the `bridge` object (QWebChannel) and the page reports what the
// operator did or what happened to a stream through the bridge's slots:
//
//   Qt -> page (signals)                 page -> Qt (slots)
//   layout_changed(columns)              page_ready()
//   pane_added(id, name, state, url)     pane_double_clicked(id)
//   pane_updated(id, name, state)        context_menu_requested(id, x, y)
//   pane_removed(id)                     control_toggle_requested(id, on)
//   pane_url_renewed(id, url)            escape_pressed()
//   focus_changed(id)                    pane_connected(id)
//   control_changed(id, on)              pane_disconnected(id, clean)
//   frame_stats_toggled(on)              frame_stats_reported(json)
//   script_posted(request, script)       script_finished(request, json)
//   selection_changed(json ids)          pane_clicked(id, toggle)
//   pane_flow_changed(id, json or "")
//
// After page_ready() Qt replays its whole state, so a reloaded page (e.g. after
// a renderer crash) recovers without help. Pane URLs carry single-use tokens:
// the page never reuses one; on a drop it reports pane_disconnected and waits
// for Qt to send a fresh URL with pane_url_renewed. A token's scope is `view`
// or `control`; the stream proxy drops a view pane's input, so taking or
// releasing control is control_changed followed by pane_url_renewed.

import RFB from "../node_modules/@novnc/novnc/core/rfb.js";
import { decodedJpegRects, withOpaqueCanvases } from "./novnc-patches.js";

// Local loopback streams: bandwidth is free, CPU is not. So by default
// (?encoding=raw) panes offer the server only CopyRect (a scroll is a copy) and
// raw pixels: no encoding in the device, no decoding here (measured with 4 live
// devices: 28.5 fps per pane for 93 % of a core, against 17.4 fps for 117 % with
// Tight/JPEG). Only offering them works: Xvnc picks JPEG whenever the client
// supports Tight, whatever it prefers. ?encoding=tight keeps noVNC's list
// (Tight, JPEG, ...) for streams that cross a slow link; there, medium JPEG
// quality keeps both ends cheap, and low zlib effort on lossless rects.
// GridView sets ?encoding=&quality=&compression= on the page URL.
const params = new URLSearchParams(location.search);
if (params.get("encoding") !== "tight") {
  const clientEncodings = RFB.messages.clientEncodings;
  const RAW = 0;
  const COPY_RECT = 1;
  // Pseudo-encodings (negative numbers: desktop size, cursor, fences, ...) stay.
  const offered = (encoding) => encoding < 0 || encoding === RAW || encoding === COPY_RECT;
  RFB.messages.clientEncodings = (sock, encodings) => clientEncodings(sock, encodings.filter(offered));
}
const QUALITY_LEVEL = clampLevel(params.get("quality"), 6);
const COMPRESSION_LEVEL = clampLevel(params.get("compression"), 1);

function clampLevel(text, fallback) {
  const value = Number.parseInt(text ?? "", 10);
  return Number.isInteger(value) && value >= 0 && value <= 9 ? value : fallback;
}
const STATS_INTERVAL_MS = 1000;
const XK_ESCAPE = 0xff1b;

// Changed-frame detection (only while frame stats are on): every SAMPLE_STEP-th
// pixel of each damaged region is compared with the last value seen there. A
// flip counts as a new frame when at least MIN_CHANGED_SAMPLES samples moved by
// more than CHANGE_THRESHOLD in some channel, so Xvnc's lossless re-send of a
// region it had sent as JPEG (same picture, slightly different pixels) does not
// count as a frame.
const SAMPLE_STEP = 4;
const CHANGE_THRESHOLD = 64;
const MIN_CHANGED_SAMPLES = 2;

const grid = document.getElementById("grid");
const template = document.getElementById("pane-template");
const panes = new Map();
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
let bridge = null;
let focusedId = "";
let selectedIds = new Set();
let statsEnabled = false;

class FrameCounter {
  // Counts flips of one RFB display, and (when enabled) flips that changed the picture.
  constructor(display) {
    this.display = display;
    this.flips = 0;
    this.frames = 0;
    this.samples = null;
    this.sampleWidth = 0;
    this.originalFlip = display.flip;
    // noVNC has no public "frame presented" hook; flip() is where a finished
    // update reaches the visible canvas (noVNC is pinned in package.json).
    display.flip = (fromQueue) => {
      const queued = display._renderQ.length !== 0 && !fromQueue;
      const damage = { ...display._damageBounds };
      this.originalFlip.call(display, fromQueue);
      if (queued) {
        return; // the render queue calls flip(true) later; count it then
      }
      this.flips += 1;
      if (statsEnabled && this.changed(damage)) {
        this.frames += 1;
      }
    };
  }

  changed(damage) {
    const width = this.display.width;
    const height = this.display.height;
    const left = Math.max(0, Math.ceil(damage.left / SAMPLE_STEP) * SAMPLE_STEP);
    const top = Math.max(0, Math.ceil(damage.top / SAMPLE_STEP) * SAMPLE_STEP);
    const right = Math.min(width, damage.right);
    const bottom = Math.min(height, damage.bottom);
    if (right <= left || bottom <= top) {
      return false;
    }
    const columns = Math.ceil(width / SAMPLE_STEP);
    if (this.samples === null || this.sampleWidth !== columns ||
        this.samples.length !== columns * Math.ceil(height / SAMPLE_STEP) * 3) {
      this.sampleWidth = columns;
      this.samples = new Uint8Array(columns * Math.ceil(height / SAMPLE_STEP) * 3);
    }
    const w = right - left;
    const h = bottom - top;
    const data = this.display._drawCtx.getImageData(left, top, w, h).data;
    let changed = 0;
    for (let y = 0; y < h; y += SAMPLE_STEP) {
      const row = ((top + y) / SAMPLE_STEP) * columns;
      for (let x = 0; x < w; x += SAMPLE_STEP) {
        const src = (y * w + x) * 4;
        const dst = (row + (left + x) / SAMPLE_STEP) * 3;
        for (let c = 0; c < 3; c++) {
          const value = data[src + c];
          if (Math.abs(value - this.samples[dst + c]) > CHANGE_THRESHOLD) {
            changed += 1;
          }
          this.samples[dst + c] = value;
        }
      }
    }
    return changed >= MIN_CHANGED_SAMPLES;
  }

  detach() {
    this.display.flip = this.originalFlip;
  }
}

class Pane {
  constructor(id) {
    this.id = id;
    this.el = template.content.firstElementChild.cloneNode(true);
    this.el.dataset.id = id;
    this.screen = this.el.querySelector(".screen");
    this.nameEl = this.el.querySelector(".name");
    this.stateEl = this.el.querySelector(".state");
    this.fpsEl = this.el.querySelector(".fps");
    this.overlayText = this.el.querySelector(".overlay-text");
    this.controlButton = this.el.querySelector(".control");
    this.header = this.el.querySelector(".pane-header");
    this.flowEl = this.el.querySelector(".flow");
    this.flowPosition = this.el.querySelector(".flow-position");
    this.flowText = this.el.querySelector(".flow-text");
    this.flowState = this.el.querySelector(".flow-state");
    this.rfb = null;
    this.counter = null;
    this.control = false;
    this.connected = false;
    // Totals over the pane's life; counters of replaced connections are folded in.
    this.pastFlips = 0;
    this.pastFrames = 0;
    this.lastFrames = 0;
    this.controlButton.addEventListener("click", (event) => {
      event.stopPropagation();
      bridge?.control_toggle_requested(this.id, !this.control);
    });
    // A click on the header selects the pane (Ctrl or Shift: adds or takes it away).
    this.header.addEventListener("click", (event) => {
      if (event.target.closest(".control")) {
        return;
      }
      bridge?.pane_clicked(this.id, event.ctrlKey || event.metaKey || event.shiftKey);
    });
  }

  update(name, state) {
    this.nameEl.textContent = name;
    this.el.title = name;
    this.stateEl.textContent = state;
    this.el.dataset.state = state;
  }

  connect(url) {
    this.closeConnection();
    this.setStatus("connecting", "Connecting…");
    let rfb;
    try {
      rfb = withOpaqueCanvases(() => new RFB(this.screen, url, { shared: true }));
    } catch (error) {
      console.error(`pane ${this.id}: cannot open ${error}`);
      this.setStatus("disconnected", "Stream unavailable, retrying…");
      setTimeout(() => bridge?.pane_disconnected(this.id, false), 0);
      return;
    }
    rfb.viewOnly = !this.control;
    rfb.focusOnClick = this.control;
    rfb.scaleViewport = true;
    rfb.resizeSession = false;
    rfb.clipViewport = false;
    rfb.qualityLevel = QUALITY_LEVEL;
    rfb.compressionLevel = COMPRESSION_LEVEL;
    rfb.background = "transparent";
    rfb.addEventListener("connect", () => {
      if (this.rfb !== rfb) {
        return;
      }
      this.connected = true;
      this.setStatus("connected", "");
      if (this.control) {
        // Taking control reconnects with a control URL: keep the keyboard here.
        rfb.focus();
      }
      bridge?.pane_connected(this.id);
    });
    rfb.addEventListener("disconnect", (event) => {
      if (this.rfb !== rfb) {
        return; // a connection we replaced or closed on purpose
      }
      const wasConnected = this.connected;
      this.foldCounter();
      this.rfb = null;
      this.connected = false;
      this.setStatus("disconnected", wasConnected ? "Stream lost, reconnecting…" : "Waiting for the device's screen…");
      bridge?.pane_disconnected(this.id, Boolean(event.detail?.clean));
    });
    this.rfb = rfb;
    this.counter = new FrameCounter(rfb._display);
  }

  // The flow this device runs: step n/m and its label, in the run's state colour.
  // Cleared: the bar fades out (CSS) and keeps its last text while it does.
  setFlow(json) {
    let flow = null;
    try {
      flow = json ? JSON.parse(json) : null;
    } catch {
      flow = null;
    }
    if (flow === null) {
      this.el.classList.remove("flow-on");
      return;
    }
    this.flowEl.dataset.state = String(flow.state ?? "");
    this.flowPosition.textContent = String(flow.position ?? "");
    this.flowText.textContent = String(flow.text ?? "");
    this.flowState.textContent = String(flow.state ?? "");
    this.flowEl.title = this.flowText.textContent;
    this.el.classList.add("flow-on");
  }

  setStatus(status, text) {
    this.el.classList.toggle("connecting", status === "connecting");
    this.el.classList.toggle("disconnected", status === "disconnected");
    this.overlayText.textContent = text;
  }

  setControl(on) {
    this.control = on;
    this.el.classList.toggle("control", on);
    this.controlButton.textContent = on ? "In control" : "View only";
    this.controlButton.title = on
      ? "Release control: back to view only"
      : "Take control: send your mouse and keyboard to this device";
    if (this.rfb !== null) {
      this.rfb.viewOnly = !on;
      this.rfb.focusOnClick = on;
      if (on) {
        this.rfb.focus();
      } else {
        this.rfb.blur();
      }
    }
  }

  foldCounter() {
    if (this.counter !== null) {
      this.pastFlips += this.counter.flips;
      this.pastFrames += this.counter.frames;
      this.counter.detach();
      this.counter = null;
    }
  }

  stats() {
    const flips = this.pastFlips + (this.counter?.flips ?? 0);
    const frames = this.pastFrames + (this.counter?.frames ?? 0);
    return { flips, frames, connected: this.connected };
  }

  closeConnection() {
    const rfb = this.rfb;
    this.foldCounter();
    this.rfb = null;
    this.connected = false;
    if (rfb !== null) {
      rfb.disconnect();
    }
  }

  destroy() {
    this.closeConnection();
    this.el.remove();
  }
}

function refreshEmptyState() {
  document.body.classList.toggle("no-panes", panes.size === 0);
}

function setLayout(columns) {
  const clamped = Math.max(1, Math.min(4, columns | 0));
  grid.classList.remove("layout-1", "layout-2", "layout-3", "layout-4");
  grid.classList.add(`layout-${clamped}`);
  fitCells();
}

// Cells of whole pixels: a pane at a fractional position would make the
// compositor resample its canvas on every composite (see novnc-patches.js).
function fitCells() {
  const style = getComputedStyle(grid);
  const columns = Number.parseInt(style.getPropertyValue("--cols"), 10) || 1;
  const gap = Number.parseFloat(style.getPropertyValue("--gap")) || 0;
  const size = (room) => `${Math.max(0, Math.floor((room - gap * (columns + 1)) / columns))}px`;
  grid.style.setProperty("--cell-w", size(grid.clientWidth));
  grid.style.setProperty("--cell-h", size(grid.clientHeight));
}

function addPane(id, name, state, url) {
  let pane = panes.get(id);
  if (pane === undefined) {
    pane = new Pane(id);
    panes.set(id, pane);
    pane.update(name, state);
    // Panes stay in name order ("browser-2" before "browser-10"), whatever order they came in:
    // the grid is sorted, so the new pane goes before the first (in the grid) with a later name.
    const after = [...grid.children].find((el) => {
      const other = panes.get(el.dataset.id);
      return other !== undefined && other !== pane && collator.compare(other.nameEl.textContent, name) > 0;
    });
    grid.insertBefore(pane.el, after ?? null);
  }
  pane.update(name, state);
  pane.el.classList.toggle("focused", id === focusedId);
  pane.el.classList.toggle("selected", selectedIds.has(id));
  pane.connect(url);
  refreshEmptyState();
}

function removePane(id) {
  const pane = panes.get(id);
  if (pane !== undefined) {
    panes.delete(id);
    pane.destroy();
  }
  refreshEmptyState();
}

function focusPane(id) {
  focusedId = panes.has(id) ? id : "";
  grid.classList.toggle("has-focus", focusedId !== "");
  fitCells();
  for (const pane of panes.values()) {
    pane.el.classList.toggle("focused", pane.id === focusedId);
  }
  const pane = panes.get(focusedId);
  if (pane !== undefined) {
    pane.el.focus({ preventScroll: true });
    if (pane.control) {
      pane.rfb?.focus();
    }
  }
}

function setSelection(json) {
  try {
    selectedIds = new Set(JSON.parse(json));
  } catch {
    selectedIds = new Set();
  }
  for (const pane of panes.values()) {
    pane.el.classList.toggle("selected", selectedIds.has(pane.id));
  }
}

function paneOf(event) {
  const el = event.target.closest?.(".pane");
  return el ? panes.get(el.dataset.id) : undefined;
}

function reportStats() {
  if (!statsEnabled || bridge === null) {
    return;
  }
  const report = { time: performance.now(), panes: {} };
  for (const pane of panes.values()) {
    const stats = pane.stats();
    report.panes[pane.id] = stats;
    pane.fpsEl.textContent = `${stats.frames - pane.lastFrames} fps`;
    pane.lastFrames = stats.frames;
  }
  bridge.frame_stats_reported(JSON.stringify(report));
}

function toggleStats(on) {
  statsEnabled = on;
  for (const pane of panes.values()) {
    pane.fpsEl.textContent = "";
    pane.lastFrames = pane.stats().frames;
  }
}

// A view-only pane keeps mouse buttons away from noVNC: it would send nothing,
// but its pointer capture retargets the mouseup and so kills the dblclick below.
for (const type of ["mousedown", "mouseup", "click"]) {
  grid.addEventListener(type, (event) => {
    const pane = paneOf(event);
    if (pane !== undefined && !pane.control && event.target.closest(".screen")) {
      event.stopPropagation();
    }
  }, true);
}

// Double-click a pane: Qt decides (focus it, or return to the grid). A pane in
// control passes double-clicks on its screen to the device instead.
grid.addEventListener("dblclick", (event) => {
  const pane = paneOf(event);
  if (pane === undefined || event.target.closest(".control")) {
    return;
  }
  if (pane.control && event.target.closest(".screen")) {
    return;
  }
  event.preventDefault();
  bridge?.pane_double_clicked(pane.id);
});

// Capture phase: noVNC stops right-clicks on its canvas. A pane in control
// keeps them for the device; otherwise Qt shows the pane's menu.
document.addEventListener("contextmenu", (event) => {
  const pane = paneOf(event);
  event.preventDefault();
  if (pane !== undefined && pane.control && event.target.closest(".screen")) {
    return;
  }
  event.stopPropagation();
  bridge?.context_menu_requested(pane ? pane.id : "", event.clientX, event.clientY);
}, true);

// Capture phase, before noVNC's keyboard grab: Esc belongs to the control room
// (back to the grid, release control); Shift+Esc sends Esc to the device.
window.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") {
    return;
  }
  event.preventDefault();
  event.stopImmediatePropagation();
  if (event.shiftKey) {
    for (const pane of panes.values()) {
      if (pane.control && pane.rfb !== null) {
        pane.rfb.sendKey(XK_ESCAPE, "Escape");
      }
    }
    return;
  }
  bridge?.escape_pressed();
}, true);

window.addEventListener("keyup", (event) => {
  if (event.key === "Escape") {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);

// A read-only view of the page for tests and benchmarks (not used by Qt).
window.corralGrid = {
  paneIds: () => [...panes.keys()],
  rfb: (id) => panes.get(id)?.rfb ?? null,
  viewOnly: (id) => panes.get(id)?.rfb?.viewOnly ?? null,
  connected: (id) => panes.get(id)?.connected ?? false,
  focusedId: () => focusedId,
  flow: (id) => {
    const pane = panes.get(id);
    if (pane === undefined) {
      return null;
    }
    const r = pane.flowEl.getBoundingClientRect();
    return {
      shown: pane.el.classList.contains("flow-on"),
      state: pane.flowEl.dataset.state ?? "",
      position: pane.flowPosition.textContent,
      text: pane.flowText.textContent,
      rect: [r.x, r.y, r.width, r.height].map(Math.round),
    };
  },
  selectedIds: () => [...panes.values()].filter((p) => p.el.classList.contains("selected")).map((p) => p.id),
  jpegRects: decodedJpegRects,
  stats: () => Object.fromEntries([...panes.values()].map((p) => [p.id, p.stats()])),
};

// GridView.evaluate(): Qt's own runJavaScript is unusable from PySide6 6.12 (it
// corrupts a refcount), so scripts for tests and benchmarks come this way.
async function runScript(requestId, script) {
  let result;
  try {
    result = await (0, eval)(script);
  } catch (error) {
    result = { error: String(error) };
  }
  bridge?.script_finished(requestId, JSON.stringify(result ?? null));
}

refreshEmptyState();
fitCells();
// The grid's size changes with the window and with its scroll bar (more panes than fit).
new ResizeObserver(fitCells).observe(grid);
setInterval(reportStats, STATS_INTERVAL_MS);

new QWebChannel(qt.webChannelTransport, (channel) => {
  const qtBridge = channel.objects.bridge;
  qtBridge.layout_changed.connect(setLayout);
  qtBridge.pane_added.connect(addPane);
  qtBridge.pane_updated.connect((id, name, state) => panes.get(id)?.update(name, state));
  qtBridge.pane_removed.connect(removePane);
  qtBridge.pane_url_renewed.connect((id, url) => panes.get(id)?.connect(url));
  qtBridge.focus_changed.connect(focusPane);
  qtBridge.control_changed.connect((id, on) => panes.get(id)?.setControl(on));
  qtBridge.frame_stats_toggled.connect(toggleStats);
  qtBridge.script_posted.connect(runScript);
  qtBridge.selection_changed.connect(setSelection);
  qtBridge.pane_flow_changed.connect((id, json) => panes.get(id)?.setFlow(json));
  bridge = qtBridge;
  bridge.page_ready();
});
