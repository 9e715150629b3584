"""Serving rules without I/O: request validation."""
