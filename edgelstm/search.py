"""`edgelstm search`: the most accurate recurrent model that fits a device, every cost measured.

Each trial trains a variant of a zoo recipe (seeded), converts its step model, quantizes and
verifies it, exports the C engine and measures flash, RAM and instructions per step on the
emulated Cortex-M4 (or per-step latency on a host runtime), and scores the recipe's metric on
held-out data. Trials run on Ray Tune (a local Ray instance, or a cluster with --address), with
Optuna's TPE as the search algorithm and ASHA stopping trials whose validation loss lags.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from edgelstm.errors import BadInputError, InterruptedRunError

if TYPE_CHECKING:
    from edgelstm.types import Manifest

RECURRENT = ("LSTM", "GRU", "SimpleRNN")


# The default space; a recipe's "search" object narrows or extends any key.
class TrialConfig(TypedDict):
    """One point of the search space (what Ray Tune samples for a trial)."""

    cell: str
    units: int
    layers: int
    conv: bool
    learning_rate: float
    quantize: str


class TrialNode(TypedDict, total=False):
    """Where a trial ran (Ray node id, host name, worker pid)."""

    node_id: str
    host: str
    pid: str


class TrialRecord(TypedDict, total=False):
    """One line of trials.jsonl: a trial's configuration, status and measurements."""

    trial_id: str
    config: TrialConfig
    node: TrialNode
    status: str
    feasible: bool
    violations: list[str]
    params: int
    train_metric: float | None
    artifact: str
    parity_max_abs: float | None
    parity_ok: bool | None
    metric: float | None
    flash_bytes: int
    ram_bytes: int
    instructions_per_step: int
    c_parity_ok: bool
    measure_error: str
    latency_us: float
    seconds: float


# Each key of TrialConfig -> its choices (learning_rate: a log-uniform [low, high] range).
SearchSpace = dict[str, list[Any]]

DEFAULT_SPACE: SearchSpace = {
    "cell": ["LSTM", "GRU", "SimpleRNN"],
    "units": [8, 16, 32, 64],
    "layers": [1, 2],
    "conv": [False, True],  # a causal Conv1D front-end (keeps the model streamable)
    "learning_rate": [3e-3, 3e-2],  # log-uniform range
    "quantize": ["int8"],
}
CONV_FRONT = {"kind": "Conv1D", "filters": 8, "kernel_size": 3, "padding": "causal",
              "activation": "relu"}  # fmt: skip


@dataclass(frozen=True)
class Budget:
    """What the device allows; None = unconstrained."""

    max_flash: int | None = None  # bytes: engine code + constants (C engine, Cortex-M4 build)
    max_ram: int | None = None  # bytes: data + bss + state + stack high-water mark
    max_instructions: int | None = None  # per step, qemu -icount (instructions, not cycles)
    max_latency_us: float | None = None  # per step on `runtime` (host)
    runtime: str | None = None
    metric_floor: float | None = None

    def violations(self, t: TrialRecord, higher_is_better: bool) -> list[str]:
        out = []
        for key, limit, unit in (
            ("flash_bytes", self.max_flash, "B flash"),
            ("ram_bytes", self.max_ram, "B RAM"),
            ("instructions_per_step", self.max_instructions, "instructions/step"),
            ("latency_us", self.max_latency_us, "µs/step"),
        ):
            if limit is not None and (t.get(key) is None or t[key] > limit):
                out.append(f"{key} {t.get(key)} > {limit} {unit}")
        m = t.get("metric")
        if self.metric_floor is not None and m is not None:
            ok = m >= self.metric_floor if higher_is_better else m <= self.metric_floor
            if not ok:
                out.append(f"metric {m:.4g} misses the floor {self.metric_floor}")
        return out


@dataclass
class SearchConfig:
    recipe: str
    outdir: Path
    trials: int = 8
    budget: Budget = field(default_factory=Budget)
    quantize: str | None = None  # fixes the quantization; else the space's choice
    address: str | None = None
    cpus_per_trial: float = 1.0
    resume: bool = False
    quick: bool = False
    seed: int = 0
    epochs: int | None = None
    space: SearchSpace | None = None  # overrides the recipe's and the default space
    export_best: bool = True


@dataclass
class SearchResult:
    trials: list[TrialRecord]
    best: TrialRecord | None
    pareto: list[TrialRecord]
    outdir: Path
    exports: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "pareto": self.pareto,
            "trials": len(self.trials),
            "feasible": sum(t.get("feasible", False) for t in self.trials),
            "outdir": str(self.outdir),
            "exports": self.exports,
            "notes": self.notes,
        }


# ----------------------------------------------------------------------------- the space


def search_space(recipe: Any, override: SearchSpace | None = None) -> SearchSpace:
    """The recipe's space: DEFAULT_SPACE, narrowed/extended by recipe.search, then `override`."""
    space = {**DEFAULT_SPACE, **(getattr(recipe, "search", None) or {}), **(override or {})}
    for key in ("cell", "units", "layers", "conv", "quantize"):
        if not isinstance(space.get(key), list) or not space[key]:
            raise BadInputError(f"search space '{key}' must be a non-empty list")
    bad = [c for c in space["cell"] if c not in RECURRENT]
    if bad:
        raise BadInputError(f"search space cell '{bad[0]}': choose from {', '.join(RECURRENT)}")
    lr = space["learning_rate"]
    if not (isinstance(lr, list) and len(lr) == 2 and 0 < lr[0] <= lr[1]):
        raise BadInputError("search space learning_rate must be [low, high] with 0 < low <= high")
    if not any(s["kind"] in RECURRENT for s in recipe.layers):
        raise BadInputError(f"recipe '{recipe.name}' has no recurrent layer to search over")
    return space


def derive_recipe(recipe: Any, config: TrialConfig) -> Any:
    """The recipe with its recurrent block replaced: `layers` x `cell(units)`, optionally behind a
    causal Conv1D; the head (layers after the recurrent block) and training settings kept."""
    layers = list(recipe.layers)
    first = next(i for i, s in enumerate(layers) if s["kind"] in RECURRENT)
    last = max(i for i, s in enumerate(layers) if s["kind"] in RECURRENT)
    template = dict(layers[last])
    seq_out = bool(template.get("return_sequences", False))
    block = []
    n = int(config["layers"])
    for k in range(n):
        spec = {key: v for key, v in template.items() if key not in ("name",)}
        spec.update(kind=config["cell"], units=int(config["units"]))
        spec["return_sequences"] = True if k < n - 1 else seq_out
        if config["cell"] == "SimpleRNN":
            spec.pop("recurrent_activation", None)
        block.append(spec)
    front = [dict(CONV_FRONT)] if config.get("conv") and not recipe.tokens else []
    new_layers = (*layers[:first], *front, *block, *layers[last + 1 :])
    train = {**recipe.train, "learning_rate": float(config["learning_rate"])}
    return replace(recipe, layers=tuple(new_layers), train=train)


# ------------------------------------------------------------------------------ one trial


def run_trial(
    config: TrialConfig,
    *,
    recipe_name: str,
    trial_dir: Path,
    budget: Budget,
    quick: bool,
    seed: int,
    epochs: int | None,
    report: Callable[[dict[str, Any]], None] = lambda _r: None,
) -> TrialRecord:
    """Train, convert, quantize, verify, export and measure one configuration (all real)."""
    from edgelstm.convert import convert_model
    from edgelstm.evaluate import evaluate_step
    from edgelstm.train import save_training, train_recipe
    from edgelstm.types import ConvertConfig, Quantization, Variant
    from edgelstm.zoo import load_recipe

    t0 = time.perf_counter()
    base = load_recipe(recipe_name)
    recipe = derive_recipe(base, config)
    out: TrialRecord = {"config": config, "node": _node()}
    res = train_recipe(recipe, seed=seed, quick=quick, epochs=epochs, epoch_end=report)
    out["params"] = int(res.model.count_params())
    save_training(res, trial_dir / "train")
    out["train_metric"] = res.metrics.get("test_metric")
    q = Quantization(config["quantize"])
    manifest = convert_model(
        trial_dir / "train" / "model.keras",
        trial_dir / "artifacts",
        ConvertConfig(
            variants=[Variant.STEP],
            quantizations=[q],
            calibration=str(trial_dir / "train" / "calibration.npz"),
            seed=seed,
            verify_fail=False,
        ),
    )
    art = manifest.artifacts[0]
    out["artifact"] = str(trial_dir / "artifacts" / art.file)
    out["parity_max_abs"] = art.parity.max_abs if art.parity else None
    out["parity_ok"] = bool(art.parity.passed) if art.parity else None
    out["metric"] = float(evaluate_step(Path(out["artifact"]), res.eval_x, res.eval_y, base.metric))
    out.update(measure(Path(out["artifact"]), manifest, trial_dir / "c", budget))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def measure(step: Path, manifest: Manifest, outdir: Path, budget: Budget) -> TrialRecord:
    """Flash, RAM and instructions per step of the C engine on the emulated Cortex-M4 (qemu
    -icount: instructions, not cycles); per-step latency on a host runtime when asked."""
    from edgelstm.errors import EdgeLSTMError
    from edgelstm.export.cengine import export_c

    out: TrialRecord = {}
    try:
        r = export_c(step, outdir, name="model", verify=["qemu"], manifest=manifest)
        q = r["verify"]["qemu"]
        out["flash_bytes"] = int(q["size"]["flash_engine_bytes"])
        out["ram_bytes"] = int(q["size"]["ram_total_bytes"])
        out["instructions_per_step"] = int(q["cycles"]["instructions_per_step_median"])
        out["c_parity_ok"] = bool(q["parity"]["ok"])
    except EdgeLSTMError as exc:  # e.g. an op the engine lacks: the trial stands, unmeasured
        out["measure_error"] = str(exc)
    if budget.max_latency_us is not None:
        out["latency_us"] = host_latency(step, budget.runtime)
    return out


def host_latency(step: Path, runtime: str | None, runs: int = 200) -> float:
    """Median per-step latency (µs, invoke only) of the step model on a host runtime."""
    import numpy as np

    from edgelstm.runtime.stream import StepRunner

    r = StepRunner(step, runtime)
    x = np.zeros(r.input_size)
    for _ in range(20):
        r.push(x)
    ns = []
    for _ in range(runs):
        r.push(x)
        ns.append(r.last_invoke_ns)
    return float(np.median(ns)) / 1e3


def _node() -> TrialNode:
    try:
        import ray

        ctx = ray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "host": socket.gethostname(), "pid": str(os.getpid())}
    except Exception:
        return {"node_id": "local", "host": socket.gethostname(), "pid": str(os.getpid())}


# ------------------------------------------------------------------------------ the search


def check_address(address: str) -> None:
    """Fail fast, in one line, when a Ray address does not answer (ray.init would hang)."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            pass
    except (OSError, ValueError) as exc:
        raise BadInputError(f"Ray address {address} does not answer ({exc})") from None


def pareto_front(trials: list[TrialRecord], higher_is_better: bool) -> list[TrialRecord]:
    """Measured trials not dominated in (metric, flash, instructions per step)."""
    pts = [t for t in trials if t.get("metric") is not None and t.get("flash_bytes") is not None]

    def key(t: TrialRecord) -> tuple[float, float, float]:
        m = t["metric"] if higher_is_better else -t["metric"]
        return (-m, t["flash_bytes"], t.get("instructions_per_step") or math.inf)

    front = []
    for t in pts:
        kt = key(t)
        if not any(
            all(a <= b for a, b in zip(key(o), kt, strict=True)) and key(o) != kt for o in pts
        ):
            front.append(t)
    return sorted(front, key=key)


def best_trial(trials: list[TrialRecord], higher_is_better: bool) -> TrialRecord | None:
    ok = [t for t in trials if t.get("feasible")]
    if not ok:
        return None
    sign = -1 if higher_is_better else 1
    return min(ok, key=lambda t: (sign * t["metric"], t["flash_bytes"], t["trial_id"]))


def read_trials(path: Path) -> list[TrialRecord]:
    """trials.jsonl, one line per finished trial (a resumed run may repeat none)."""
    if not path.is_file():
        return []
    seen: dict[str, TrialRecord] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            t = json.loads(line)
            old = seen.get(t["trial_id"])
            # a measured record beats a stub (a failed trial resumed); the first one is kept
            if old is None or (old.get("status") and not t.get("status")):
                seen[t["trial_id"]] = t
    return sorted(seen.values(), key=lambda t: t["trial_id"])


def run_search(
    cfg: SearchConfig, progress: Callable[[str], None] = lambda _m: None
) -> SearchResult:
    """Run (or resume) the search on Ray Tune; every trial's record goes to trials.jsonl."""
    from edgelstm.zoo import load_recipe

    recipe = load_recipe(cfg.recipe)
    space = search_space(recipe, cfg.space)
    if cfg.quantize:
        space["quantize"] = [cfg.quantize]
    if cfg.trials < 1:
        raise BadInputError("--trials must be at least 1")
    if cfg.address:
        check_address(cfg.address)
    out = Path(cfg.outdir).resolve()
    state = out / "ray"
    if cfg.resume and not (state / "search").is_dir():
        raise BadInputError(f"{out}: nothing to resume (no earlier search there)")
    if not cfg.resume and (out / "trials.jsonl").exists():
        raise BadInputError(f"{out}: holds an earlier search; use --resume or another -o")
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.json").write_text(
        json.dumps({"recipe": cfg.recipe, "space": space, "budget": asdict(cfg.budget),
                    "trials": cfg.trials, "seed": cfg.seed, "quick": cfg.quick}, indent=2) + "\n"
    )  # fmt: skip

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    progress("starting Ray" + (f" (joining {cfg.address})" if cfg.address else " locally"))
    # Ray Tune prints its tables to stdout; stdout is for our result (--json) alone.
    with contextlib.redirect_stdout(sys.stderr):
        return _run(cfg, recipe, space, out, state, progress)


def _run(cfg: SearchConfig, recipe: Any, space: SearchSpace, out: Path, state: Path,
         progress: Callable[[str], None]) -> SearchResult:  # fmt: skip
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    ray.init(
        address=cfg.address,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
        **({} if cfg.address else {"num_cpus": os.cpu_count() or 1}),
    )
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        resources = {"cpu": cfg.cpus_per_trial, **({"gpu": 1} if gpus else {})}
        higher = recipe.higher_is_better
        # Tune's experiment state can lag the trial's last report: a trial whose record reached
        # trials.jsonl just before an interrupt may be restored as unfinished. It is handed its
        # record back and reports it again instead of training a second time.
        finished = {t["trial_id"]: t for t in read_trials(out / "trials.jsonl")
                    if cfg.resume and not t.get("status")}  # fmt: skip
        trainable = tune.with_resources(
            tune.with_parameters(
                _trainable, recipe_name=cfg.recipe, outdir=str(out), budget=cfg.budget,
                quick=cfg.quick, seed=cfg.seed, epochs=cfg.epochs, higher=higher,
                finished=finished,
            ),
            resources,
        )  # fmt: skip
        sink = _TrialSink(out / "trials.jsonl", progress)
        if cfg.resume:
            progress(f"resuming the search in {state / 'search'}")
            tuner = tune.Tuner.restore(
                str(state / "search"), trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            param_space = {
                "cell": tune.choice(space["cell"]),
                "units": tune.choice(space["units"]),
                "layers": tune.choice(space["layers"]),
                "conv": tune.choice(space["conv"]),
                "learning_rate": tune.loguniform(*space["learning_rate"]),
                "quantize": tune.choice(space["quantize"]),
            }
            searcher = OptunaSearch(
                metric=["score", "flash"], mode=["max", "min"], seed=cfg.seed
            )  # TPE, multi-objective: metric up, flash down
            # ASHA on the per-epoch validation loss; with 3 epochs or fewer there is nothing to
            # stop early (the first rung would be the last), so trials run to the end (FIFO).
            epochs = cfg.epochs or int(
                {**recipe.train, **(recipe.quick if cfg.quick else {})}["epochs"]
            )
            scheduler = (
                ASHAScheduler(
                    time_attr="training_iteration",
                    metric="val_score",
                    mode="max",
                    max_t=epochs + 1,
                    grace_period=max(1, epochs // 4),
                    reduction_factor=3,
                )
                if epochs > 3
                else None
            )
            tuner = tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(
                    search_alg=searcher, scheduler=scheduler, num_samples=cfg.trials
                ),
                run_config=tune.RunConfig(
                    name="search", storage_path=str(state), callbacks=[sink], verbose=0
                ),
            )
        grid = tuner.fit()
        if cfg.resume:  # the restored run config has no sink: record what finished now
            known = {t["trial_id"] for t in read_trials(out / "trials.jsonl")}
            for r in grid:
                rec = (r.metrics or {}).get("record")
                if rec and rec["trial_id"] not in known:
                    sink.write(rec)
    finally:
        ray.shutdown()
    trials = read_trials(out / "trials.jsonl")
    unfinished = [r for r in grid if r.metrics is None or not (r.metrics or {}).get("final")]
    if len(trials) < cfg.trials and (unfinished or len(grid) < cfg.trials):
        raise InterruptedRunError(
            f"search interrupted: {len(trials)} of {cfg.trials} trials recorded in "
            f"{out / 'trials.jsonl'}; continue with --resume"
        )
    res = SearchResult(trials, best_trial(trials, higher), pareto_front(trials, higher), out)
    if not trials:
        raise BadInputError("no trial finished (see the Ray logs in " + str(state) + ")")
    if res.best is None:
        raise BadInputError(_nothing_fits(trials, cfg.budget))
    return res


def _nothing_fits(trials: list[TrialRecord], budget: Budget) -> str:
    parts = []
    for key, limit in (("flash_bytes", budget.max_flash), ("ram_bytes", budget.max_ram),
                       ("instructions_per_step", budget.max_instructions),
                       ("latency_us", budget.max_latency_us)):  # fmt: skip
        vals = [t[key] for t in trials if t.get(key) is not None]
        if limit is not None and vals:
            parts.append(f"smallest measured {key} {min(vals):,} (budget {limit:,})")
    return f"no trial of {len(trials)} fits the budget: " + ("; ".join(parts) or "see trials.jsonl")


def _trainable(config: TrialConfig, *, recipe_name: str, outdir: str, budget: Budget,
               quick: bool, seed: int, epochs: int | None, higher: bool,
               finished: dict[str, TrialRecord] | None = None) -> None:  # fmt: skip
    """One Ray Tune trial: per-epoch validation reports (for ASHA), then the measured record."""
    from ray import tune

    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    if finished and trial_id in finished:  # recorded before an interrupt: never run twice
        tune.report(_final_report(finished[trial_id], higher))
        return
    trial_dir = Path(outdir) / "trials" / trial_id

    def epoch_end(logs: dict[str, Any]) -> None:
        loss = logs.get("val_loss", logs.get("loss"))
        if loss is not None and math.isfinite(loss):
            tune.report({"val_score": -float(loss), "score": 0.0, "flash": 1e12})

    record = run_trial(config, recipe_name=recipe_name, trial_dir=trial_dir, budget=budget,
                       quick=quick, seed=seed, epochs=epochs, report=epoch_end)  # fmt: skip
    record["trial_id"] = trial_id
    record["violations"] = budget.violations(record, higher)
    record["feasible"] = not record["violations"] and "measure_error" not in record
    tune.report(_final_report(record, higher))


def _final_report(record: TrialRecord, higher: bool) -> dict[str, Any]:
    """A trial's last report: its objectives for the searcher and its whole record."""
    m = record["metric"] if higher else -record["metric"]
    return {
        "val_score": m,
        "score": m if record["feasible"] else m - 1e6,
        "flash": float(record.get("flash_bytes") or 1e12),
        "record": record,
        "final": True,
    }


def _stub(trial: Any, status: str, **extra: Any) -> TrialRecord:
    """The record of a trial that never reached its measurements."""
    return {"trial_id": trial.trial_id, "config": dict(trial.config), "status": status,
            "feasible": False, "metric": None, "node": {"node_id": "-"}, **extra}  # fmt: skip


class _TrialSink:
    """A Tune callback on the driver: appends each finished trial's record to trials.jsonl."""

    def __new__(cls, path: Path, progress: Callable[[str], None]) -> Any:
        from ray.tune import Callback

        class Sink(Callback):
            def __init__(self) -> None:
                self.written: set[str] = set()

            def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                                **info: Any) -> None:  # fmt: skip
                if result.get("final") and "record" in result:
                    self.write(result["record"])

            def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                                  **info: Any) -> None:  # fmt: skip
                if trial.trial_id not in self.written:  # ASHA stopped it during training
                    last = trial.last_result or {}
                    self.write(_stub(trial, "stopped early by ASHA (validation loss behind)",
                                     val_score=last.get("val_score")))  # fmt: skip

            def on_trial_error(self, iteration: int, trials: list, trial: Any,
                               **info: Any) -> None:  # fmt: skip
                if trial.trial_id not in self.written:
                    self.write(_stub(trial, f"failed: {trial.error_file or 'see the Ray logs'}"))

            def write(self, record: TrialRecord) -> None:
                self.written.add(record["trial_id"])
                if any(t["trial_id"] == record["trial_id"] and not t.get("status")
                       for t in read_trials(path)):  # fmt: skip
                    return  # a trial handed back its record on resume is already there
                with open(path, "a") as f:
                    f.write(json.dumps(record, sort_keys=True, default=str) + "\n")
                c = record["config"]
                if record.get("status"):
                    progress(f"trial {record['trial_id']}: {record['status']}")
                    return
                progress(
                    f"trial {record['trial_id']}: {c['layers']}x{c['cell']}({c['units']})"
                    + (" +conv" if c.get("conv") else "")
                    + f" {c['quantize']}: metric "
                    f"{record['metric']:.4f}, flash {record.get('flash_bytes', '?')} B, "
                    f"{record.get('instructions_per_step', '?')} instr/step"
                    + ("" if record["feasible"] else " (over budget)")
                )

        return Sink()


# ------------------------------------------------------------------------------- reporting


def export_best(res: SearchResult, progress: Callable[[str], None] = lambda _m: None) -> None:
    """Convert and export the winner like `edgelstm pipeline` (TFLite Micro files + C engine)."""
    from edgelstm.convert import convert_model
    from edgelstm.pipeline import export_all, save_exports
    from edgelstm.types import ConvertConfig, Quantization

    assert res.best is not None
    tdir = Path(res.best["artifact"]).parents[1]
    q = Quantization(res.best["config"]["quantize"])
    art = res.outdir / "best" / "artifacts"
    progress(
        f"converting the best trial {res.best['trial_id']} (sequence + step, float + {q.value})"
    )
    manifest = convert_model(
        tdir / "train" / "model.keras",
        art,
        ConvertConfig(
            quantizations=list(dict.fromkeys([Quantization.FLOAT, q])),
            calibration=str(tdir / "train" / "calibration.npz"),
            verify_fail=False,
        ),
    )
    files = {a.file: (art / a.file).read_bytes() for a in manifest.artifacts}
    exports = export_all(manifest, files, progress)
    res.exports = save_exports(exports, res.outdir / "best" / "firmware")


def report(res: SearchResult, higher_is_better: bool) -> Any:
    from edgelstm.report import Plot, Report, Table, scatter_plot

    rep = Report(title=f"edgelstm search: {res.outdir.name}")
    b = res.best
    if b:
        c = b["config"]
        rep.intro.append(
            f"best feasible: trial {b['trial_id']}, {c['layers']}x{c['cell']}({c['units']})"
            f"{' + Conv1D' if c.get('conv') else ''}, {c['quantize']}: metric {b['metric']:.4f}, "
            f"flash {b['flash_bytes']:,} B, RAM {b['ram_bytes']:,} B, "
            f"{b['instructions_per_step']:,} instructions per step (Cortex-M4, qemu -icount: "
            "instructions, not cycles)"
        )
    rep.intro.append(
        f"{len(res.trials)} trials, {sum(t['feasible'] for t in res.trials)} within the budget; "
        "every cost is measured, none estimated."
    )

    def row(t: TrialRecord) -> list[str]:
        c = t["config"]
        metric = "-" if t.get("metric") is None else f"{t['metric']:.4f}"
        return [t["trial_id"], f"{c['layers']}x{c['cell']}({c['units']})" + (" +conv" if
                c.get("conv") else ""), c["quantize"], metric,
                f"{t.get('flash_bytes', 0):,}", f"{t.get('ram_bytes', 0):,}",
                f"{t.get('instructions_per_step', 0):,}",
                "yes" if t["feasible"] else t.get("status", "no"),
                t["node"]["node_id"][:8]]  # fmt: skip

    head = ["trial", "model", "quant", "metric", "flash B", "RAM B", "instr/step", "fits", "node"]
    rep.sections.append(Table("Pareto front (metric vs flash vs instructions per step)", head,
                              [row(t) for t in res.pareto]))  # fmt: skip
    rep.sections.append(Table("Every trial", head, [row(t) for t in res.trials]))
    pts = [(f"{t['trial_id'][-5:]} {t['config']['cell']}({t['config']['units']})",
            t["flash_bytes"], t["metric"]) for t in res.trials
           if t.get("flash_bytes") and t.get("metric") is not None]  # fmt: skip
    png = scatter_plot(pts, "flash (bytes, C engine on Cortex-M4)", "metric") if pts else None
    if png:
        rep.sections.append(Plot("Metric vs flash", png))
    return rep


def save_report(res: SearchResult, higher_is_better: bool) -> None:
    from edgelstm.fsutil import write_atomic

    rep = report(res, higher_is_better)
    write_atomic(res.outdir / "report.html", rep.to_html())
    write_atomic(res.outdir / "report.md", rep.to_markdown())
    write_atomic(
        res.outdir / "result.json", json.dumps(res.to_dict(), indent=2, default=str) + "\n"
    )
