"""Write start/test/qr.svg: the QR code the test page qr.html shows (run after changing the URL).

Run: python backend/runtime/images/browser/make_test_qr.py. Needs ``segno`` (a dev
dependency). The SVG is committed; tests/unit/agent/test_test_pages.py checks it
still decodes to :data:`TARGET_URL` and matches what this script writes.
"""

from __future__ import annotations

import io
from pathlib import Path

import segno

__all__ = ["QR_SVG", "TARGET_URL", "qr_svg"]

TARGET_URL = "file:///opt/corral/start/test/target.html"
QR_SVG = Path(__file__).parent / "start" / "test" / "qr.svg"


def qr_svg(url: str = TARGET_URL) -> bytes:
    """The SVG of a QR code of *url*: 8 px modules, the standard 4-module quiet zone."""
    buffer = io.BytesIO()
    segno.make(url, error="m", micro=False).save(
        buffer, kind="svg", scale=8, border=4, xmldecl=False, title=f"QR code of {url}"
    )
    return buffer.getvalue() + b"\n"


if __name__ == "__main__":
    QR_SVG.write_bytes(qr_svg())
    print(f"wrote {QR_SVG}")
