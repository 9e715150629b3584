"""Fixtures shared by the suites. Integration and end-to-end fixtures start real processes on loopback."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
