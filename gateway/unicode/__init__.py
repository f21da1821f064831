"""The Unicode data files the gateway reads (see LICENSE here)."""
