"""Document cleaning for the ingestion service: pure functions and classes (the dedup index saves itself)."""
