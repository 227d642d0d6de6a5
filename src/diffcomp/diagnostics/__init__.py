"""Diagnostics of a compressed model against its FP model: per-timestep noise-prediction error,
gain and bias on held-out FP trajectories, and what they add up to in the samples."""
