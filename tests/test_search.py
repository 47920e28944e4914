"""edgelstm search on a real two-node Ray cluster on 127.0.0.1 (started and stopped here)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgelstm.errors import BadInputError

pytest.importorskip("ray", reason="ray not installed (pip install 'edgelstm[search]')")

# Tiny trials: the echo recipe with its quick settings, small cells, no Conv1D.
SPACE = {"cell": ["LSTM", "GRU"], "units": [4, 8], "layers": [1], "conv": [False]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def cluster():
    """A head and one worker node, 1 CPU each, on 127.0.0.1; `--block` keeps each node's
    processes tied to ours, so terminating them stops exactly this cluster."""
    import shutil
    import tempfile

    port = _free_port()
    # Ray's socket paths live under its temp dir and must stay within AF_UNIX's 107 bytes:
    # pytest's (xdist) tmp paths are too long, so a short dir of our own, removed afterwards
    tmp = Path(tempfile.mkdtemp(prefix="elray", dir="/tmp"))
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--block", "--disable-usage-stats"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [_ray_bin(), "start", "--head", f"--port={port}", "--include-dashboard=false",
         f"--temp-dir={tmp}", *common],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        yield from _up(head, address, common, env, tmp)
    finally:  # whatever happened, this cluster goes: no Ray processes outlive the tests
        nodes = [p for p in (worker_of.pop(address, None), head) if p is not None]
        for p in nodes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in nodes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


worker_of: dict[str, subprocess.Popen] = {}


def _up(head: subprocess.Popen, address: str, common: list[str], env: dict, tmp: Path):
    """Wait for the head, start and wait for the worker node; yields the address."""
    from edgelstm.search import check_address

    deadline = time.time() + 120
    while True:
        try:
            check_address(address)
            break
        except BadInputError:
            if time.time() > deadline or head.poll() is not None:
                pytest.fail("the Ray head did not come up in 120 s")
            time.sleep(0.5)
    log = tmp / "worker.log"
    with open(log, "wb") as logf:
        worker = subprocess.Popen(
            [_ray_bin(), "start", f"--address={address}", *common],
            stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    worker_of[address] = worker
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        # a loaded 2-core machine can take a while to start the second raylet
        joined = time.time() + 180
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            if worker.poll() is not None or time.time() > joined:
                tail = log.read_text(errors="replace")[-2000:]
                pytest.fail(f"the Ray worker node did not join (exit {worker.poll()}):\n{tail}")
            time.sleep(0.5)
    finally:
        ray.shutdown()
    yield address


def _cfg(out: Path, address: str, trials: int, **kw):
    from edgelstm.search import Budget, SearchConfig

    return SearchConfig(
        "echo", out, trials=trials, address=address, quick=True, seed=3, space=SPACE,
        budget=kw.pop("budget", Budget(max_flash=200_000)), **kw,
    )  # fmt: skip


def _summary(trials: list[dict]) -> list[tuple]:
    return sorted(
        (json.dumps(t["config"], sort_keys=True), round(t["metric"], 6), t["flash_bytes"],
         t["instructions_per_step"]) for t in trials
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.xdist_group("ray-cluster")  # one cluster per test session, not one per xdist worker
def test_search_on_a_two_node_cluster(cluster: str, tmp_path: Path) -> None:
    from edgelstm.export.cengine import export_c
    from edgelstm.search import export_best, read_trials, run_search, save_report

    # 1. two trials, one CPU per node: they run side by side, one on each node
    out = tmp_path / "a"
    res = run_search(_cfg(out, cluster, 2))
    assert len(res.trials) == 2 == len(read_trials(out / "trials.jsonl"))
    assert len({t["node"]["node_id"] for t in res.trials}) == 2, [t["node"] for t in res.trials]
    for t in res.trials:  # every cost measured, none estimated
        assert t["flash_bytes"] > 0 and t["ram_bytes"] > 0 and t["instructions_per_step"] > 0
        assert 0.0 <= t["metric"] <= 1.0 and t["c_parity_ok"]
    best = res.best
    assert best is not None and best["feasible"] and best in res.pareto
    # the winner is within budget by a fresh measurement of its artifact
    fresh = export_c(Path(best["artifact"]), tmp_path / "fresh", name="m", verify=["qemu"],
                     manifest=json.loads((Path(best["artifact"]).parent / "manifest.json")
                                         .read_text()))  # fmt: skip
    q = fresh["verify"]["qemu"]
    assert q["size"]["flash_engine_bytes"] == best["flash_bytes"] <= 200_000
    assert q["cycles"]["instructions_per_step_median"] == best["instructions_per_step"]
    export_best(res)
    save_report(res, True)
    assert (out / "best" / "artifacts" / "manifest.json").is_file()
    assert any(k.startswith("c/") for k in res.exports) and any(k.startswith("tflm/")
                                                              for k in res.exports)  # fmt: skip
    assert "Pareto front" in (out / "report.md").read_text()

    # 2. the same seed again, with a flash budget nothing meets: exit 2 naming the smallest
    # measured cost; the trial it ran (the seeded sampler's first) repeats run 1's to the byte
    from edgelstm.search import Budget

    with pytest.raises(BadInputError, match=r"smallest measured flash_bytes [\d,]+ \(budget 100\)"):
        run_search(_cfg(tmp_path / "b", cluster, 1, budget=Budget(max_flash=100)))
    rerun = read_trials(tmp_path / "b" / "trials.jsonl")
    assert len(rerun) == 1 and not rerun[0]["feasible"]
    assert set(_summary(rerun)) <= set(_summary(res.trials))


@pytest.mark.slow
@pytest.mark.xdist_group("ray-cluster")
def test_search_resumes_after_sigint(cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = [sys.executable, "-m", "edgelstm", "search", "echo", "-o", str(out), "--trials", "3",
            "--quick", "--seed", "5", "--address", cluster, "--space", json.dumps(SPACE),
            "--no-export"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jsonl = out / "trials.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if jsonl.is_file() and jsonl.read_text().strip():
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, "an interrupted search must not report success"
    before = {json.loads(line)["trial_id"]: line for line in jsonl.read_text().splitlines()}
    # two nodes: trial 3 starts only when one of the first two ends, so it cannot be done yet
    assert 1 <= len(before) < 3, err[-2000:]
    done = subprocess.run([*args, "--resume", "--json"], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = jsonl.read_text().splitlines()
    final = {json.loads(line)["trial_id"]: line for line in lines}
    assert len(final) == 3 and json.loads(done.stdout)["trials"] == 3
    for tid, line in before.items():  # finished trials were not run again
        assert final[tid] == line


def test_bad_input_is_one_line(run_cli, tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    cases = [
        (["no-such-recipe"], "unknown recipe"),
        (["echo", "--address", f"127.0.0.1:{port}"], f"Ray address 127.0.0.1:{port} does not"),
        (["echo", "--space", '{"cell": ["Transformer"]}'], "search space cell 'Transformer'"),
        (["echo", "--space", "{oops"], "--space: not JSON"),
        (["echo", "--resume"], "nothing to resume"),
        (["echo", "--runtime", "litert"], "--runtime goes with --max-latency-us"),
    ]
    for extra, message in cases:
        code, _, err = run_cli("search", *extra[:1], "-o", str(tmp_path / "o"), *extra[1:])
        assert code == 2 and message in err and "Traceback" not in err, (extra, err)
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o" / "trials.jsonl").exists()
