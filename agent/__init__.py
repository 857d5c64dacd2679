"""Corral device agent: runs inside a device container and talks to the hub."""

__version__ = "0.1.0"
