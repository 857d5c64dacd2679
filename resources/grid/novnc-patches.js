// noVNC, adapted to a grid of many small live panes.
//
// These patches replace methods of noVNC 1.7's Display and RawDecoder (pinned in
// package.json): check them when upgrading noVNC.
//
// 1. Scale in the page, once per changed region, not in the compositor on every
//    frame. Stock noVNC keeps the visible canvas at the device's resolution and
//    scales it with CSS; QtWebEngine's software compositor then resamples every
//    pane through Skia's slow float pipeline on every composite (measured: one
//    320x240 pane filling 1440x900 cost 76 % of a core in the compositor thread;
//    drawn 1:1 into an opaque canvas, 7 %). Here the visible canvas has exactly
//    the pane's size in device pixels, at a whole-pixel position, so composites
//    are plain copies; flip() resamples only the damaged rects, only when a
//    frame arrives.
//
// 2. Raw rects in one piece: stock noVNC draws a raw rect one row at a time, a
//    putImageData per row; a frame of small changed regions cost a thousand
//    canvas calls. Here a rect is drawn with one call once its bytes are in (a
//    huge one in bands of rows, as they arrive).
//
// 3. JPEG rects: noVNC 1.7 turns each one into a base64 data: URL for an <img>:
//    a base64 pass on the page's main thread per rect, and Blink keeps the
//    decoded images in its memory cache (~100 MB per pane at 30 fps, measured).
//    Decode with WebCodecs' ImageDecoder instead (no base64, nothing cached;
//    measured cheaper than createImageBitmap(Blob), which ships each rect
//    through the browser process) and hand the VideoFrame to the render queue as
//    a 'frame' entry, which noVNC draws in order and then close()s.

import Display from "../node_modules/@novnc/novnc/core/display.js";
import RawDecoder from "../node_modules/@novnc/novnc/core/decoders/raw.js";

let jpegRects = 0;

/** How many JPEG rects went through ImageDecoder (tests check the patch is live). */
export function decodedJpegRects() {
  return jpegRects;
}

function setCanvasSize(display, cssWidth, cssHeight) {
  const vp = display._viewportLoc;
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(0, Math.round(cssWidth * ratio));
  const height = Math.max(0, Math.round(cssHeight * ratio));
  display._scale = vp.w > 0 ? cssWidth / vp.w : 0;
  const canvas = display._target;
  const styleWidth = `${width / ratio}px`;
  const styleHeight = `${height / ratio}px`;
  if (canvas.style.width !== styleWidth || canvas.style.height !== styleHeight) {
    canvas.style.width = styleWidth;
    canvas.style.height = styleHeight;
  }
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width; // clears the canvas: draw it all again
    canvas.height = height;
    display._damage(vp.x, vp.y, vp.w, vp.h);
    display.flip();
  }
}

Display.prototype._rescale = function rescale(factor) {
  const vp = this._viewportLoc;
  setCanvasSize(this, Math.round(factor * vp.w), Math.round(factor * vp.h));
};

Display.prototype.autoscale = function autoscale(containerWidth, containerHeight) {
  const vp = this._viewportLoc;
  const roomWidth = Math.floor(containerWidth);
  const roomHeight = Math.floor(containerHeight);
  if (roomWidth <= 0 || roomHeight <= 0 || vp.w === 0 || vp.h === 0) {
    setCanvasSize(this, 0, 0);
    return;
  }
  const factor = Math.min(roomWidth / vp.w, roomHeight / vp.h);
  let width = Math.min(roomWidth, Math.round(factor * vp.w));
  let height = Math.min(roomHeight, Math.round(factor * vp.h));
  // noVNC centres the canvas (margin: auto): an even margin keeps it on whole
  // pixels, so the compositor copies it instead of resampling it.
  width -= (roomWidth - width) % 2;
  height -= (roomHeight - height) % 2;
  setCanvasSize(this, width, height);
};

// Grown by this many source pixels on each side before clipping to the damaged
// destination pixels: bilinear filtering reads neighbours, and a source rect cut
// at the damage would make seams at its edges.
const RESAMPLE_MARGIN = 2;
// An update's rects are redrawn one by one while they cover less than this share
// of their bounding box (scattered changes: a few small draws, not the screen).
const SCATTERED = 0.5;
const MAX_DAMAGE_RECTS = 32;

const originalDamage = Display.prototype._damage;
Display.prototype._damage = function damage(x, y, w, h) {
  originalDamage.call(this, x, y, w, h);
  this._damageRects ??= [];
  if (this._damageRects.length <= MAX_DAMAGE_RECTS) {
    this._damageRects.push([x, y, x + w, y + h]);
  }
};

Display.prototype.flip = function flip(fromQueue) {
  if (this._renderQ.length !== 0 && !fromQueue) {
    this._renderQPush({ type: "flip" });
    return;
  }
  const bounds = this._damageBounds;
  const box = [bounds.left, bounds.top, bounds.right, bounds.bottom];
  const rects = this._damageRects ?? [];
  this._damageRects = [];
  bounds.left = bounds.top = 65535;
  bounds.right = bounds.bottom = 0;
  if (box[2] <= box[0] || box[3] <= box[1]) {
    return;
  }
  const area = ([left, top, right, bottom]) => (right - left) * (bottom - top);
  const scattered = rects.length <= MAX_DAMAGE_RECTS &&
    rects.reduce((sum, rect) => sum + area(rect), 0) < SCATTERED * area(box);
  for (const rect of scattered ? rects : [box]) {
    drawToTarget(this, ...rect);
  }
};

// Copies the framebuffer region (left, top)-(right, bottom) to the visible
// canvas, scaled to it.
function drawToTarget(display, left, top, right, bottom) {
  const vp = display._viewportLoc;
  const canvas = display._target;
  left = Math.max(left, vp.x);
  top = Math.max(top, vp.y);
  right = Math.min(right, vp.x + vp.w);
  bottom = Math.min(bottom, vp.y + vp.h);
  if (right <= left || bottom <= top || canvas.width === 0 || canvas.height === 0) {
    return;
  }
  const ctx = display._targetCtx;
  const scaleX = canvas.width / vp.w;
  const scaleY = canvas.height / vp.h;
  if (scaleX === 1 && scaleY === 1) {
    ctx.drawImage(display._backbuffer, left, top, right - left, bottom - top,
      left - vp.x, top - vp.y, right - left, bottom - top);
    return;
  }
  // The whole destination pixels the region touches...
  const x0 = Math.floor((left - vp.x) * scaleX);
  const y0 = Math.floor((top - vp.y) * scaleY);
  const x1 = Math.min(canvas.width, Math.ceil((right - vp.x) * scaleX));
  const y1 = Math.min(canvas.height, Math.ceil((bottom - vp.y) * scaleY));
  // ...drawn from a source rect with a margin, clipped to exactly those pixels.
  const sx0 = Math.max(vp.x, left - RESAMPLE_MARGIN);
  const sy0 = Math.max(vp.y, top - RESAMPLE_MARGIN);
  const sx1 = Math.min(vp.x + vp.w, right + RESAMPLE_MARGIN);
  const sy1 = Math.min(vp.y + vp.h, bottom + RESAMPLE_MARGIN);
  ctx.save();
  ctx.beginPath();
  ctx.rect(x0, y0, x1 - x0, y1 - y0);
  ctx.clip();
  ctx.drawImage(display._backbuffer, sx0, sy0, sx1 - sx0, sy1 - sy0,
    (sx0 - vp.x) * scaleX, (sy0 - vp.y) * scaleY, (sx1 - sx0) * scaleX, (sy1 - sy0) * scaleY);
  ctx.restore();
}

// A VNC framebuffer has no alpha. Opaque canvases let the compositor copy a pane
// instead of blending it (measured: one big pane cost 69 % of a core in the
// compositor thread blended, 7 % opaque). noVNC opens its canvases' contexts in
// Display's constructor, which runs inside `new RFB()`: wrap that in this.
export function withOpaqueCanvases(create) {
  const prototype = HTMLCanvasElement.prototype;
  const original = prototype.getContext;
  prototype.getContext = function getContext(type, options) {
    return original.call(this, type, type === "2d" ? { ...options, alpha: false } : options);
  };
  try {
    return create();
  } finally {
    prototype.getContext = original;
  }
}

RawDecoder.prototype.decodeRect = function decodeRect(x, y, width, height, sock, display, depth) {
  if (width === 0 || height === 0) {
    return true;
  }
  if (this._lines === 0) {
    this._lines = height;
  }
  const pixelSize = depth === 8 ? 1 : 4;
  const bytesPerLine = width * pixelSize;
  while (this._lines > 0) {
    // All the rows that are in; a huge rect is drawn in bands as it arrives.
    const rows = Math.min(this._lines, Math.floor((sock._rQlen - sock._rQi) / bytesPerLine));
    if (rows === 0) {
      return false; // called again when more bytes are in
    }
    const top = y + height - this._lines;
    const data = sock.rQshiftBytes(rows * bytesPerLine, false);
    display.blitImage(x, top, width, rows, depth === 8 ? expand8(data) : opaque(data), 0);
    this._lines -= rows;
  }
  return true;
};

function opaque(data) {
  for (let i = 3; i < data.length; i += 4) {
    data[i] = 255; // the server's padding byte; the canvas wants opaque pixels
  }
  return data;
}

// noVNC's 8-bit mode (2 bits per channel, for very slow links) to RGBA.
function expand8(data) {
  const pixels = new Uint8Array(data.length * 4);
  for (let i = 0; i < data.length; i++) {
    pixels[i * 4] = (data[i] & 0x3) * 85;
    pixels[i * 4 + 1] = ((data[i] >> 2) & 0x3) * 85;
    pixels[i * 4 + 2] = ((data[i] >> 4) & 0x3) * 85;
    pixels[i * 4 + 3] = 255;
  }
  return pixels;
}

const EMPTY_FRAME = Object.assign(new OffscreenCanvas(1, 1), { close() {} });

if (typeof ImageDecoder === "function") {
  Display.prototype.imageRect = function imageRect(x, y, width, height, mime, arr) {
    if (width === 0 || height === 0) {
      return;
    }
    jpegRects += 1;
    const entry = { ready: false, frame: null, promise: null };
    const decoder = new ImageDecoder({ data: arr, type: mime }); // copies arr
    entry.promise = decoder
      .decode()
      .then((result) => {
        entry.frame = result.image;
      })
      .catch((error) => {
        console.warn(`undecodable ${mime} rect ${width}x${height}: ${error}`);
        entry.frame = EMPTY_FRAME;
      })
      .finally(() => {
        entry.ready = true;
        decoder.close();
      });
    this._renderQPush({ type: "frame", frame: entry, x, y, width, height });
  };
}
