"""edgelstm benchmarks: `python -m benchmarks.run [--quick] [--out DIR]` (see run.py)."""
