"""Export stage: a .tflite to TFLite Micro sources (`tflm`) or a standalone C engine (`c`).

Kept import-free so `python -m edgelstm.export.tflm_arena` probes and the CLI start fast.
"""
