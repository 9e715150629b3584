"""Feedback rules, without I/O."""
