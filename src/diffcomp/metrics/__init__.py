"""Metrics: torch-fidelity wrapper, feature extractors, sFID, precision/recall."""
