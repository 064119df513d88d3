"""Lets the examples run from a checkout: `python examples/events/publisher.py`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
