"""Find QR codes and barcodes in a screenshot with zbar (``pyzbar``). Blocking: call in a thread."""

from __future__ import annotations

import io
from typing import Any

from agent.exceptions import CommandFailed

__all__ = ["decode_codes"]


def decode_codes(png: bytes) -> list[dict[str, Any]]:
    """Every code in the PNG *png*, in reading order (top to bottom, then left to right).

    Each is ``{"text", "format", "rect": [left, top, width, height]}``; ``text``
    is the payload decoded as UTF-8 (invalid bytes replaced). Raises CommandFailed
    when zbar or Pillow is not installed (the image lacks libzbar0).
    """
    try:
        from PIL import Image
        from pyzbar import pyzbar
    except (ImportError, OSError) as exc:
        raise CommandFailed(f"read_qr: the QR decoder is not available ({exc})") from exc
    with Image.open(io.BytesIO(png)) as image:
        gray = image.convert("L")
    found = pyzbar.decode(gray)
    codes = [
        {
            "text": code.data.decode("utf-8", errors="replace"),
            "format": str(code.type),
            "rect": [code.rect.left, code.rect.top, code.rect.width, code.rect.height],
        }
        for code in found
    ]
    return sorted(codes, key=lambda code: (code["rect"][1], code["rect"][0]))
