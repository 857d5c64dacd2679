"""How the app words a failed backend call for the operator."""

from __future__ import annotations

from backend.api import CorralError

__all__ = ["describe_error"]


def describe_error(exc: BaseException) -> str:
    """What the operator reads: the backend's own message, or a plain fallback."""
    if isinstance(exc, CorralError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "The backend did not answer in time. Try again; if it persists, restart Corral."
    return f"Unexpected error: {exc or type(exc).__name__}. Details are in the log."
