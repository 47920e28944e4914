"""Run the TFLite converter in a child process, so a converter crash cannot take the CLI down.

Some conversions segfault inside TensorFlow (int8 of WHILE-loop RNNs). The parent writes a job list,
a worker process converts the jobs in order and records each result; if the worker dies, the job it
was on is reported as crashed and a fresh worker takes the rest.

The worker stays up between job lists of one parent process (it reads job-list paths on stdin), so
a process that converts many models (tests, the pipeline, search) imports TensorFlow in it once;
it exits when the parent closes its stdin or dies. EDGELSTM_FRESH_WORKER=1 starts one per list.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelstm.arrays import load_arrays
from edgelstm.fsutil import die_with_parent

CRASH_EXIT_HINT = "the TensorFlow converter crashed"
NO_SPACE_EXIT = 28  # the worker's exit code when it cannot write for a full disk (ENOSPC)
NO_SPACE_MESSAGE = "No space left on device"


@dataclass
class ConvertJob:
    """One conversion: a SavedModel to a .tflite with a quantization scheme."""

    id: str
    saved_model: str
    out: str
    quantization: str
    calibration: str | None = None  # .npz: one array per signature input, [N, *input_shape]
    float_io: bool = False
    # "saved_model": an edgelstm-built SavedModel; "keras_file": the user's Keras file converted with
    # the plain TFLiteConverter.from_keras_model (batch fixed to 1), i.e. what users get without us.
    source_kind: str = "saved_model"


@dataclass
class JobResult:
    id: str
    ok: bool
    message: str = ""
    crashed: bool = False


def run_jobs(jobs: list[ConvertJob], workdir: Path, timeout: float = 900.0) -> dict[str, JobResult]:
    """Convert every job in isolated worker processes; never raises for a converter failure."""
    results: dict[str, JobResult] = {}
    pending = list(jobs)
    attempt = 0
    while pending:
        attempt += 1
        jobs_file = workdir / f"jobs_{attempt}.json"
        jobs_file.write_text(json.dumps([vars(j) for j in pending]))
        if os.environ.get("EDGELSTM_FRESH_WORKER") == "1":
            code = _run_fresh(jobs_file, workdir / f"worker_{attempt}.log", timeout)
        else:
            code = _run_warm(jobs_file, timeout)
        for job in pending:
            done = Path(job.out + ".result.json")
            if done.exists():
                try:
                    results[job.id] = JobResult(**json.loads(done.read_text()))
                except ValueError:  # e.g. truncated on a full disk
                    results[job.id] = JobResult(
                        job.id, ok=False, message=f"unreadable worker result {done.name}"
                    )
                done.unlink()
        remaining = [j for j in pending if j.id not in results]
        if remaining and code == NO_SPACE_EXIT:
            for job in remaining:
                results[job.id] = JobResult(job.id, ok=False, message=NO_SPACE_MESSAGE)
            remaining = []
        elif remaining and code != 0:
            # The first unfinished job is the one the worker died on.
            victim = remaining[0]
            results[victim.id] = JobResult(
                victim.id,
                ok=False,
                crashed=True,
                message=f"{CRASH_EXIT_HINT} ({_describe_exit(code)})",
            )
            remaining = remaining[1:]
        elif remaining:
            for job in remaining:
                results[job.id] = JobResult(
                    job.id, ok=False, message="worker exited without converting it"
                )
            remaining = []
        pending = remaining
    return results


_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONFAULTHANDLER": "0"}
_WARM: dict[str, subprocess.Popen] = {}  # this process's warm worker, started on first use


def _run_fresh(jobs_file: Path, log: Path, timeout: float) -> int:
    """One worker process for one job list; its exit code."""
    with open(log, "wb") as logf:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "edgelstm.convert.isolate", str(jobs_file)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env={**os.environ, **_ENV},
                # SIGKILL of the CLI must not leave the worker converting on as an orphan.
                preexec_fn=die_with_parent,
            )
            return proc.returncode
        except subprocess.TimeoutExpired:
            return -signal.SIGKILL


def _run_warm(jobs_file: Path, timeout: float) -> int:
    """Hand a job list to the warm worker (starting it if needed): 0 when it answered, else the
    exit code it died with (the caller then blames the first unfinished job, as for a fresh one)."""
    import selectors

    proc = _WARM.get("proc")
    if proc is None or proc.poll() is not None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgelstm.convert.isolate", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if os.environ.get("EDGELSTM_DEBUG") == "1" else subprocess.DEVNULL,
            env={**os.environ, **_ENV},
            preexec_fn=die_with_parent,
        )
        _WARM["proc"] = proc
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(f"{jobs_file}\n".encode())
        proc.stdin.flush()
    except BrokenPipeError:
        return _reap(proc)
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            _reap(proc)
            return -signal.SIGKILL
    line = proc.stdout.readline()
    if line.strip() == b"done":
        return 0
    code = _reap(proc)
    return code if code != 0 else 1


def _reap(proc: subprocess.Popen) -> int:
    _WARM.pop("proc", None)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _serve() -> None:
    """The warm worker: convert each job list named on stdin, answer "done" on stdout."""
    from edgelstm._tf import import_tf

    # The answer channel is our own copy of fd 1; fd 1 itself (where C++ code may print) and
    # Python's stdout go to stderr, so no converter chatter can reach the channel.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import_tf()
    for line in sys.stdin:
        if line.strip():
            _worker(line.strip())
            out.write("done\n")
            out.flush()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _convert(job: ConvertJob) -> bytes:
    import tensorflow as tf

    if job.source_kind == "keras_file":
        conv = tf.lite.TFLiteConverter.from_keras_model(_batch1_keras_model(job.saved_model))
    else:
        conv = tf.lite.TFLiteConverter.from_saved_model(
            job.saved_model, signature_keys=["serving_default"]
        )
    quant = job.quantization
    if quant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quant == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quant in ("int8", "int16x8"):
        data = load_arrays(job.calibration, "calibration")
        names = sorted(data)
        count = len(data[names[0]])

        def representative() -> Any:
            for i in range(count):
                if job.source_kind == "keras_file":
                    yield [data[name][i] for name in names]
                else:
                    yield {name: data[name][i] for name in names}

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        if quant == "int8":
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            io_type = tf.int8
        else:
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
            io_type = tf.int16
        if not job.float_io:
            # Integer I/O for every float tensor; int32 token inputs stay int32.
            conv.inference_input_type = io_type
            conv.inference_output_type = io_type
    elif quant != "float":
        raise ValueError(f"unknown quantization {quant}")
    return conv.convert()


def _batch1_keras_model(path: str) -> Any:
    """The user's Keras model with its batch dimension fixed to 1 (weights unchanged)."""
    import keras

    model = keras.saving.load_model(path, compile=False)
    shape = tuple(model.input_shape[1:])
    dtype = model.inputs[0].dtype
    fixed = keras.models.clone_model(
        model, input_tensors=keras.Input(batch_shape=(1, *shape), dtype=dtype)
    )
    fixed.set_weights(model.get_weights())
    return fixed


def _worker(jobs_file: str) -> None:
    from edgelstm._tf import import_tf

    import_tf()
    for raw in json.loads(Path(jobs_file).read_text()):
        job = ConvertJob(**raw)
        result_path = Path(job.out + ".result.json")
        try:
            data = _convert(job)
            tmp = Path(job.out + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, job.out)
            result = JobResult(job.id, ok=True)
        except Exception as exc:  # the converter's own errors: report, keep going
            text = str(exc).strip().splitlines()
            msg = next((line for line in text if "error" in line.lower()), text[0] if text else "")
            result = JobResult(job.id, ok=False, message=f"{type(exc).__name__}: {msg[:400]}")
        try:
            result_path.write_text(json.dumps(vars(result)))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                os._exit(NO_SPACE_EXIT)
            raise


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        _serve()
    else:
        _worker(sys.argv[1])
