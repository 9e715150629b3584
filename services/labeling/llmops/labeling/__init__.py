"""labeling service."""
