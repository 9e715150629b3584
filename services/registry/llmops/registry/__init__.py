"""registry service."""
