"""Ingestion's own persistence: batch records and the exact-dedup memory."""
