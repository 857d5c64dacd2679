"""Widgets: show state, emit what the operator asks for."""
