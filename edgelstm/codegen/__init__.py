"""C code generation, below the runtime layer: pure functions from a .tflite (and names) to C
source text. Nothing here writes files, compiles or runs a model, so both the exporters and the
native runtime build on it.

* `c`: identifiers, literals, byte arrays and alignment macros (TFLite Micro and C engine).
* `engine`: the standalone C engine's generator (`generate`: graph -> lowering -> files).
* `templates`: the one Jinja2 environment every generated C file is rendered with.
"""
