"""Calibration data: FP trajectory capture and the selectors that pick samples from it."""
