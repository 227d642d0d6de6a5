"""Quantization core: quantizers, the quantized layer, model wrapping, range initialisation."""
