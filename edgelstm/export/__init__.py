"""Export stage: a .tflite to TFLite Micro sources (`tflm`) or a standalone C engine (`c`).

Kept import-free so the CLI starts fast.
"""
