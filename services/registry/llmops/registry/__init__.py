"""Registry service: registered models, numbered versions, gated aliases with rollback, and lineage."""
