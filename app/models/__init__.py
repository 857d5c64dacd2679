"""Qt item models over backend snapshots."""
