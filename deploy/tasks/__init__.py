"""Thin Invoke task modules. Each imports heavy libraries (docker, fabric, django) inside task bodies,
so that `inv --list` stays fast."""
