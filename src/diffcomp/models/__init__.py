"""Model loading (hub / local folder / trained default), samplers and the small trainer."""
