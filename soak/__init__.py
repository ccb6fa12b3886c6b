"""Bounded load through the local runtime against the real stack: ``python -m soak``."""

from soak.run import Report, run

__all__ = ["Report", "run"]
