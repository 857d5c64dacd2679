"""Settings (environment ``CORRAL_*``) and paths."""

from backend.config.paths import DevicePaths
from backend.config.settings import Settings, settings_problems, unknown_variables

__all__ = ["DevicePaths", "Settings", "settings_problems", "unknown_variables"]
