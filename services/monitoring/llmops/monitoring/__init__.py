"""monitoring service."""
