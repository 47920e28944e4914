"""benchmarks/run.py --quick end to end: real converter, LiteRT, ONNX Runtime, TF and gcc."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _stats_ok(stats: dict) -> bool:
    return 0 < stats["min_us"] <= stats["median_us"] <= stats["max_us"] and stats["repeats"] >= 1


@pytest.mark.slow
def test_quick_benchmark_end_to_end(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "latest.json").read_text())
    md = (tmp_path / "latest.md").read_text()

    env = data["env"]
    assert env["machine"]["cores"] >= 1 and env["machine"]["cpu"]
    for pkg in ("tensorflow", "ai_edge_litert", "onnxruntime", "numpy", "gcc"):
        assert env["versions"][pkg], pkg
    assert env["threads"]["litert_num_threads"] == 1
    assert data["peak"]["fp32_mac_per_s"] > 1e8  # any real core does >0.1 GMAC/s

    step = {(r["system"], r["runtime"]): r for r in data["step"]}
    measured = [r for r in data["step"] if r["status"] == "measured"]
    edgelstm = [r for r in measured if r.get("role") == "edgelstm"]
    # float and int8 step models, each with and without XNNPACK, all measured.
    assert {(r["quant"], r["xnnpack"]) for r in edgelstm} == {
        (q, x) for q in ("float", "int8") for x in (True, False)
    }
    for r in measured:
        if r.get("role") in ("floor", "cengine"):  # computed / timed in C: no Python column
            continue
        assert r["python"] and _stats_ok(r["python"]), r["system"]
        if r["raw"]:
            assert _stats_ok(r["raw"]), r["system"]
    roles = {r.get("role") for r in measured}
    assert {"edgelstm", "fused", "plain", "ort", "keras", "floor"} <= roles
    # The floor is MACs / measured peak. (Timing comparisons -- Python step vs bare invoke,
    # runtime vs floor -- are the benchmark's report, not assertions: on a loaded 2-core CI
    # machine a 5 us median moves by more than any margin a test could allow.)
    floor = next(r for r in measured if r.get("role") == "floor" and r["quant"] == "fp32")
    assert floor["raw"]["median_us"] == pytest.approx(
        floor["macs"] / data["peak"]["fp32_mac_per_s"] * 1e6
    )
    # The plain converter's int8 job either worked or is recorded with its failure, never dropped.
    plain_int8 = [
        r for r in data["step"] if r["system"].startswith("(b)") and "int8" in r["system"]
    ]
    assert len(plain_int8) == 2  # stateless and stateful=True
    assert all(r["status"] == "measured" or r["notes"] for r in plain_int8)
    # (e) the C engine, float and int8, compiled with gcc -O3 and timed natively.
    ceng = [r for r in data["step"] if r.get("role") == "cengine"]
    assert {r["quant"] for r in ceng if r["status"] == "measured"} == {"float", "int8"}, ceng
    assert all(_stats_ok(r["raw"]) and r["raw"]["batch"] >= 100 for r in ceng)
    verdicts = [t for t in data["targets"] if "native C engine" in t["target"]]
    assert len(verdicts) == 2 and all(t["met"] is not None for t in verdicts)
    # Cortex-M4: the LSTM(64) int8 step is counted on qemu, bit-exact, with its budgets checked.
    mcu = {(r["model"], r.get("quant")): r for r in data["mcu"]}
    m64 = mcu[("lstm64", "int8")]
    assert m64["status"] == "measured" and m64["detail"]["parity_ok"], m64
    assert 0.3 < m64["value"] < 10 and m64["detail"]["macs_per_step"] == 64 * 64 * 4 * 2 + 64
    assert m64["targets"]["flash_budget"] == m64["detail"]["weight_bytes"] + 8192
    assert any(r["status"] == "published" for r in data["mcu"])
    assert any(t["target"].startswith("Cortex-M4 int8 LSTM(64)") for t in data["targets"])

    seq = [r for r in data["sequence"] if r["status"] == "measured" and r.get("role") != "floor"]
    assert {"edgelstm", "edgelstm_seq", "ort", "keras"} <= {r.get("role") for r in seq}

    sizes = [r for r in data["size"] if r.get("quant") and r.get("size_bytes")]
    quants = {r["quant"] for r in sizes}
    assert {"float", "dynamic", "float16", "int8"} <= quants
    float_seq = next(r for r in sizes if r["quant"] == "float" and r["variant"] == "sequence")
    assert float_seq["metric"] == "accuracy" and float_seq["value"] >= 0.9  # labels = own argmax
    assert all(0.0 <= r["value"] <= 1.0 for r in sizes if r.get("metric") == "accuracy")

    assert data["targets"] and all("met" in t for t in data["targets"])
    assert env["machine"]["cpu"] in md
    assert "| system | runtime | raw invoke µs per step |" in md
    assert md.count("\n|") > 20
    assert not list(tmp_path.glob(".latest*")), "temporary files left behind"
    assert step  # keyed lookup built without duplicates collapsing everything
