"""Tasks: image (being written)."""
