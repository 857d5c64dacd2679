"""The test pages baked into the browser image (/opt/corral/start/test/): the QR code decodes."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from pyzbar import pyzbar

BROWSER = Path(__file__).parents[3] / "backend" / "runtime" / "images" / "browser"
TEST_PAGES = BROWSER / "start" / "test"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_test_qr", BROWSER / "make_test_qr.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rasterise(svg: str) -> tuple[bytes, int, int]:
    """Grey pixels of segno's SVG: one path of horizontal strokes (``M``/``m`` moves, ``h`` lines)
    one module thick, under ``transform="scale(s)"``. White background, black strokes."""
    width = int(re.search(r'width="(\d+)"', svg)[1])  # type: ignore[index]
    height = int(re.search(r'height="(\d+)"', svg)[1])  # type: ignore[index]
    scale = int(re.search(r'transform="scale\((\d+)\)"', svg)[1])  # type: ignore[index]
    path = re.search(r' d="([^"]+)"', svg)[1]  # type: ignore[index]
    pixels = bytearray(b"\xff" * width * height)
    x = y = 0.0
    for op, numbers in re.findall(r"([MmHh])([-\d. ]+)", path):
        values = [float(v) for v in numbers.split()]
        if op in "Mm":
            x, y = (values[0], values[1]) if op == "M" else (x + values[0], y + values[1])
            continue
        end = x + values[0] if op == "h" else values[0]
        row = int(y - 0.5)  # the stroke is centred on y, one module thick
        for py in range(row * scale, (row + 1) * scale):
            start = py * width
            pixels[start + int(x * scale) : start + int(end * scale)] = b"\x00" * int((end - x) * scale)
        x = end
    return bytes(pixels), width, height


def test_the_committed_qr_svg_decodes_to_the_target_page() -> None:
    svg = (TEST_PAGES / "qr.svg").read_text()
    (code,) = pyzbar.decode(_rasterise(svg))
    assert code.type == "QRCODE"
    assert code.data.decode() == "file:///opt/corral/start/test/target.html"


def test_the_committed_qr_svg_is_what_the_generator_writes() -> None:
    generator = _generator()
    assert generator.TARGET_URL == "file:///opt/corral/start/test/target.html"
    assert (TEST_PAGES / "qr.svg").read_bytes() == generator.qr_svg()


def test_the_pages_have_the_titles_flows_rely_on() -> None:
    titles = {
        page.name: re.search(r"<title>([^<]*)</title>", page.read_text())[1]  # type: ignore[index]
        for page in sorted(TEST_PAGES.glob("*.html"))
    }
    assert titles == {
        "click.html": "Corral test: click",
        "errors.html": "Corral test: errors",
        "login.html": "Corral test: login",
        "long.html": "Corral test: long page",
        "qr.html": "Corral test: QR",
        "target.html": "Corral test: target",
    }
