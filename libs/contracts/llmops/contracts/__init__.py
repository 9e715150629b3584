"""Contracts between the platform's services: event models, topic names and generated gRPC code."""
