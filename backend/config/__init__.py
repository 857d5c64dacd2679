"""Settings (environment ``CORRAL_*``) and paths."""

from backend.config.settings import Settings, settings_problems

__all__ = ["Settings", "settings_problems"]
