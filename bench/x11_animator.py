"""A light animated X11 client: the frame counter barcode plus a few moving boxes.

    DISPLAY=:N python bench/x11_animator.py WIDTH HEIGHT FPS

``bench/grid_fps.py --source xvnc --animator x11`` runs one per Xvnc display:
sources that cost a fraction of a Chromium device, so the grid's own limit shows
on a 2-core box where 16 animating Chromium devices alone exceed the CPU. Each
frame paints the same 16-bit barcode as the benchmark's pages (16 cells along
the top edge, white = bit set, lowest bit first) and moves 6 boxes, repainting
only what changed, as a live app screen does. Plain libX11 through ctypes, no
extra packages. Runs until killed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import time

BITS = 16
BARCODE_HEIGHT = 16
BOX = 24
COLOURS = (0xE74C3C, 0x2ECC71, 0x3498DB, 0xF1C40F, 0x9B59B6, 0x1ABC9C)
BACKGROUND = 0x1B1F24


def main(argv: list[str]) -> int:
    width, height, fps = int(argv[1]), int(argv[2]), float(argv[3])
    x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XDefaultScreen.argtypes = [ctypes.c_void_p]
    x11.XRootWindow.restype = ctypes.c_ulong
    x11.XRootWindow.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XCreateSimpleWindow.restype = ctypes.c_ulong
    x11.XCreateSimpleWindow.argtypes = (
        [ctypes.c_void_p, ctypes.c_ulong] + [ctypes.c_int] * 2 + ([ctypes.c_uint] * 3 + [ctypes.c_ulong] * 2)
    )
    x11.XMapWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    x11.XCreateGC.restype = ctypes.c_void_p
    x11.XCreateGC.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_void_p]
    x11.XSetForeground.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong]
    x11.XFillRectangle.argtypes = (
        [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p] + [ctypes.c_int] * 2 + ([ctypes.c_uint] * 2)
    )
    x11.XFlush.argtypes = [ctypes.c_void_p]

    display = x11.XOpenDisplay(None)
    if not display:
        print("x11_animator: cannot open the display", file=sys.stderr)
        return 1
    root = x11.XRootWindow(display, x11.XDefaultScreen(display))
    window = x11.XCreateSimpleWindow(display, root, 0, 0, width, height, 0, 0, BACKGROUND)
    x11.XMapWindow(display, window)
    gc = x11.XCreateGC(display, window, 0, None)

    def fill(colour: int, x: int, y: int, w: int, h: int) -> None:
        x11.XSetForeground(display, gc, colour)
        x11.XFillRectangle(display, window, gc, x, y, w, h)

    fill(BACKGROUND, 0, 0, width, height)
    cell = width // BITS
    boxes = [
        [
            (i * 53) % (width - BOX),
            BARCODE_HEIGHT + (i * 37) % (height - BARCODE_HEIGHT - BOX),
            2 + i % 3,
            1 + i % 2,
        ]
        for i in range(len(COLOURS))
    ]
    period = 1.0 / fps
    frame = 0
    due = time.monotonic()
    while True:
        frame = (frame + 1) & 0xFFFF
        for box, colour in zip(boxes, COLOURS, strict=True):
            fill(BACKGROUND, box[0], box[1], BOX, BOX)
            box[0] += box[2]
            box[1] += box[3]
            if not 0 <= box[0] <= width - BOX:
                box[2] = -box[2]
                box[0] += 2 * box[2]
            if not BARCODE_HEIGHT <= box[1] <= height - BOX:
                box[3] = -box[3]
                box[1] += 2 * box[3]
            fill(colour, box[0], box[1], BOX, BOX)
        for bit in range(BITS):
            fill(0xFFFFFF if frame >> bit & 1 else 0x000000, bit * cell, 0, cell, BARCODE_HEIGHT)
        x11.XFlush(display)
        due += period
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            due = time.monotonic()  # late: do not try to catch up


if __name__ == "__main__":
    sys.exit(main(sys.argv))
