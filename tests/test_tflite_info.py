"""The .tflite reader needs no interpreter wheel, and reads what the official bindings read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgelstm.tflite_info import builtin_options, constant_data, read_tflite, schema

DATA = Path(__file__).resolve().parent / "data"
MODELS = sorted(DATA.glob("*.tflite"))
INTERPRETERS = ["ai_edge_litert", "tflite_runtime", "tensorflow", "tflite_micro"]


def test_inspect_and_c_graph_with_every_interpreter_blocked() -> None:
    """inspect --json and the C engine's graph loader run with no interpreter package at all."""
    block = "".join(f"sys.modules[{m!r}] = None\n" for m in INTERPRETERS)
    script = (
        "import contextlib, io, json, sys\n" + block + "from edgelstm.cli._app import run_cli\n"
        "from edgelstm.cli import cli\n"
        "from edgelstm.codegen.engine.graph import load_graph\n"
        f"for p in {[str(m) for m in MODELS]!r}:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        assert run_cli(cli, ['-q', 'inspect', p, '--json']) == 0\n"
        "    assert any(t.data is not None for t in load_graph(p).tensors)\n"
        "    print(json.dumps(json.loads(out.getvalue())))\n"
        f"assert not any(sys.modules.get(m) for m in {INTERPRETERS!r})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(docs) == len(MODELS)
    for doc, path in zip(docs, MODELS, strict=True):
        assert doc["inputs"] and doc["macs_per_invoke"] > 0, path
        assert doc["ops"] == read_tflite(path).op_set


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_reader_matches_the_official_bindings(path: Path) -> None:
    """Options and constants as the official object API (ai-edge-litert's schema) sees them."""
    fb = pytest.importorskip("ai_edge_litert.schema_py_generated")
    assert schema() is not None
    data = path.read_bytes()
    model = fb.ModelT.InitFromPackedBuf(data, 0)
    sg = model.subgraphs[0]
    opts, consts = builtin_options(data), constant_data(data)
    assert len(opts) == len(sg.operators)
    for op, got in zip(sg.operators, opts, strict=True):
        want = op.builtinOptions
        assert (want is None) == (got is None)
        for key, value in (vars(want) if want is not None else {}).items():
            if key == "quantSpec":  # newer than the tflite package's schema; None here
                assert value is None
                continue
            expect = np.asarray(value).tolist() if isinstance(value, (list, np.ndarray)) else value
            assert getattr(got, key) == expect, (key, value)
    for i, t in enumerate(sg.tensors):
        buf = model.buffers[t.buffer] if t.buffer else None
        raw = (
            np.asarray(buf.data, np.uint8).tobytes()
            if buf is not None and buf.data is not None
            else None
        )
        assert consts.get(i) == (raw or None), i
