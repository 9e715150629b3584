"""Labeling rules without I/O: models, label validation, agreement statistics and dataset versions."""
