"""Exit 0 once the X server of display :N answers, 1 if it does not within the timeout.

Usage: python3 xready.py DISPLAY TIMEOUT_SECONDS

"Answers" means a full X11 connection setup over the display's unix socket is
accepted, which is what Chromium needs; the socket file alone can exist a moment
before the server dispatches. Standard library only (runs on the image's python3).
"""

import socket
import sys
import time

# Little-endian ('l'), protocol 11.0, no authorisation name or data.
_SETUP_REQUEST = b"l\x00\x0b\x00\x00\x00\x00\x00\x00\x00\x00\x00"
_SUCCESS = 1


def answers(display_number: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(f"/tmp/.X11-unix/X{display_number}")
            sock.sendall(_SETUP_REQUEST)
            reply = sock.recv(8)
    except OSError:
        return False
    return bool(reply) and reply[0] == _SUCCESS


def main() -> int:
    display_number = sys.argv[1].lstrip(":").split(".")[0]
    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        if answers(display_number):
            return 0
        time.sleep(0.05)
    return 1


if __name__ == "__main__":
    sys.exit(main())
