"""retrieval service."""
