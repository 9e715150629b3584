"""Fixtures and helpers that start the real local broker, services and models for tests."""
