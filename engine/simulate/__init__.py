"""`fnl simulate`: forecasting a funnel with synthetic leads.

`behavior` holds its input, the behaviour model: how many leads arrive and how they,
sales and the CRM act (`schemas/behavior.schema.json`).
"""
from __future__ import annotations

from .behavior import DEFAULTS, Behavior, Defaults, default_behavior, find_behavior, is_behavior_file, load_behavior

__all__ = ["DEFAULTS", "Behavior", "Defaults", "default_behavior", "find_behavior", "is_behavior_file",
           "load_behavior"]
