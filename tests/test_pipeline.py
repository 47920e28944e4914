"""Zoo, training (incl. tf.distribute on two logical CPUs) and the pipeline, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgelstm.zoo import list_recipes, load_recipe
from edgelstm.zoo.data import echo


def test_echo_generator_targets_are_the_delayed_input() -> None:
    x, y = echo(4, 16, seed=3, delay=3)
    assert x.shape == y.shape == (4, 16, 1)
    assert np.all(y[:, :3] == -1)  # bits from before the window are not scored
    np.testing.assert_array_equal(y[:, 3:], x[:, :-3])
    # Windows are consecutive pieces of one stream: the unscored head is the previous tail.
    np.testing.assert_array_equal(x[0, -3:, 0], echo(4, 16, seed=3, delay=3)[0][0, -3:, 0])


def test_recipes_load_and_list(run_cli, tmp_path: Path) -> None:
    names = [r.name for r in list_recipes()]
    assert "echo" in names
    code, out, err = run_cli("zoo", "list", "--json")
    assert code == 0, err
    assert {r["name"] for r in json.loads(out)} == set(names)
    code, _, err = run_cli("train", "no-such-recipe", "-o", str(tmp_path / "x"))
    assert code == 2 and "unknown recipe 'no-such-recipe'" in err


def test_quick_training_loss_falls(tmp_path: Path) -> None:
    from edgelstm.train import save_training, train_recipe

    res = train_recipe(load_recipe("echo"), epochs=4, seed=0, quick=True)
    assert res.metrics["loss_last"] < res.metrics["loss_first"]
    save_training(res, tmp_path / "t")
    assert {p.name for p in (tmp_path / "t").iterdir()} == {
        "model.keras",
        "metrics.json",
        "calibration.npz",
        "eval.npz",
    }


def test_distributed_training_on_two_logical_cpus(tmp_path: Path) -> None:
    # sensor, not echo: echo trains with stateful TBPTT, which keeps the batch on one device.
    code = (
        "import tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from edgelstm.train import train_recipe\nfrom edgelstm.zoo import load_recipe\n"
        "r = train_recipe(load_recipe('sensor'), epochs=2, seed=0, quick=True)\n"
        "print('DEVICE', r.metrics['device'], r.metrics['loss_last'] < r.metrics['loss_first'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DEVICE 2xCPU True" in proc.stdout


def test_pipeline_end_to_end_quick(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, stdout, err = run_cli("pipeline", "echo", "--train", "--quick", "-o", str(out))
    assert code == 0, err[-3000:]
    for name in (
        "report.md",
        "report.html",
        "result.json",
        "artifacts/manifest.json",
        "train/model.keras",
    ):
        assert (out / name).exists(), name
    result = json.loads((out / "result.json").read_text())
    assert set(result["accuracy"]) == set(result["latency"])
    assert len(result["accuracy"]) == 4  # sequence + step, float + int8
    for stats in result["latency"].values():
        assert 0 < stats["min_us"] <= stats["p50_us"] <= stats["p99_us"] <= stats["max_us"]
    assert any(k.startswith("tflm/") for k in result["exports"])
    c_int8 = result["exports"]["c/model_step_int8"]["verify"]["host"]["parity"]
    assert c_int8["ok"] and c_int8["max_lsb_diff"] <= 1  # the C engine, compiled and run
    assert "Standalone C engine" in stdout
    assert "<img" in (out / "report.html").read_text() and "| artifact |" in stdout
    assert "Inside the network" in stdout  # the explain section (int8 step model vs float)
    from browser_check import assert_readable

    assert_readable(out / "report.html", min_images=4)  # as a reader sees it, at 1280 px


def test_pipeline_recipe_argument_conflict(run_cli, tmp_path: Path) -> None:
    code, _out, err = run_cli("pipeline", "echo", "--recipe", "sensor", "-o", str(tmp_path / "r"))
    assert code == 2 and "two recipes given" in err
