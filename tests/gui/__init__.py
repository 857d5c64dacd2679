"""GUI tests (pytest-qt, real pixels under Xvfb)."""
