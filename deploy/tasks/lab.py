"""Tasks: lab (being written)."""
