"""Tasks: stack (being written)."""
