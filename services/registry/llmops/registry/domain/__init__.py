"""The registry's logic without I/O: values, gates, alias history rules and lineage assembly."""
