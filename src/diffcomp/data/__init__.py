"""Datasets: the offline default (Fashion-MNIST) and image export for reference sets."""
