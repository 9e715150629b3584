"""The monitoring service's stores: the ClickHouse analytics store."""
