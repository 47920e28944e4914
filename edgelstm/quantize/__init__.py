"""Quantization extras: magnitude pruning, size honesty and quantization-error reports."""
