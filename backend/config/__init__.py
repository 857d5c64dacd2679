"""Settings (environment ``CORRAL_*``) and paths."""

from backend.config.settings import Settings

__all__ = ["Settings"]
