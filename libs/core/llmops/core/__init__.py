"""Shared plumbing of the platform's services: settings, messaging, gRPC bootstrap, stores, metrics."""
