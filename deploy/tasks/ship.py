"""Tasks: ship (being written)."""
