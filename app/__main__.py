"""``python -m app``: run the desktop app with settings from the environment."""

import sys

from app.main import main

sys.exit(main())
