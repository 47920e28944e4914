"""`edgelstm convert` killed by real signals at several points: no orphaned converter worker, no
staging or work directories left behind (SIGKILL's leftovers go on the next run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

DEADLINE = 120.0  # seconds for a tiny model to reach the kill point on a loaded machine


def _children(pid: int) -> list[int]:
    """Child pids from /proc (what `ps --ppid` reads), so the test needs no procps."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    """Exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _orphans(tmp: Path) -> list[int]:
    """Live converter workers of this test's run (their job file lives under its TMPDIR)."""
    found = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmd.read_bytes()
        except OSError:
            continue
        mine = b"edgelstm.convert.isolate" in argv and str(tmp).encode() in argv
        if mine and _alive(int(cmd.parent.name)):
            found.append(int(cmd.parent.name))
    return found


def _debris(tmp: Path, parent: Path) -> list[str]:
    return sorted(
        [p.name for p in parent.iterdir() if p.name.startswith(".out.")]
        + [p.name for p in tmp.iterdir() if p.name.startswith("edgelstm-work")]
    )


def _start(model: Path, out: Path, tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp)}
    cmd = [sys.executable, "-m", "edgelstm", "convert", str(model), "-o", str(out)]
    cmd += ["--variant", "sequence", "--verify-samples", "2"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(cond: Callable[[], object], proc: subprocess.Popen) -> object:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"convert ended before the kill point: {proc.communicate()[1][-800:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("kill point not reached")


def _worker(proc: subprocess.Popen) -> int | None:
    for pid in _children(proc.pid):
        try:
            if b"edgelstm.convert.isolate" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            pass
    return None


@pytest.mark.parametrize(
    ("sig", "point"),
    [
        (signal.SIGTERM, "workdir"),  # work dir just created, before the worker
        (signal.SIGHUP, "worker"),  # while the converter worker runs
        (signal.SIGKILL, "worker"),  # no cleanup possible: the worker must still die
    ],
    ids=["term-workdir", "hup-worker", "kill-worker"],
)
def test_killed_convert_leaves_no_orphan_and_no_debris(
    sig: signal.Signals, point: str, keras_model_file, tmp_path: Path
) -> None:
    model = keras_model_file("lstm_seq")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out"
    proc = _start(model, out, tmp)
    if point == "workdir":
        _wait_for(lambda: any(p.name.startswith("edgelstm-work") for p in tmp.iterdir()), proc)
        worker = None
    else:
        worker = _wait_for(lambda: _worker(proc), proc)
        time.sleep(0.3)  # inside the worker's TensorFlow import / conversion
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, err[-2000:]
    if worker is not None:
        end = time.monotonic() + 5
        while _alive(worker) and time.monotonic() < end:
            time.sleep(0.05)
        assert not _alive(worker), f"converter worker {worker} outlived convert ({sig.name})"
    time.sleep(0.5)  # (a worker spawned in the last instant would show up by now)
    assert _orphans(tmp) == []
    if sig != signal.SIGKILL:
        # the same exit as Ctrl-C: click reports "aborted", code 130
        assert proc.returncode == 130 and "aborted" in err and "Traceback" not in err, err
        assert _debris(tmp, tmp_path) == []
        assert not out.exists()  # created by the run, removed with nothing in it
        return
    # SIGKILL: the leftovers stay until the next run into the same -o removes them.
    assert _debris(tmp, tmp_path), "expected a staging/work dir from the killed run"
    env = {**os.environ, "TMPDIR": str(tmp)}
    nxt = subprocess.run(
        # fails fast (int8 without --calibration), after the cleanup
        [
            sys.executable,
            "-m",
            "edgelstm",
            "convert",
            str(model),
            "-o",
            str(out),
            "--quantize",
            "int8",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert nxt.returncode == 2 and "needs --calibration" in nxt.stderr, nxt.stderr
    assert _debris(tmp, tmp_path) == []


def test_live_runs_staging_is_not_touched(tmp_path: Path) -> None:
    """Only dirs whose owning pid is dead count as stale."""
    from edgelstm.convert import outdir

    out = tmp_path / "out"
    mine = outdir.new_stage(out)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        other = tmp_path / f".out.edgelstm-{sleeper.pid}.abc"
        other.mkdir()
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        gone = tmp_path / f".out.edgelstm-{dead.pid}.xyz"
        gone.mkdir()
        (gone / "m.tflite").write_bytes(b"x")
        removed = outdir.clean_leftovers(out)
        assert gone in removed and not gone.exists()
        assert other.exists() and mine.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_signal_swallowed_by_a_finalizer_still_ends_the_block() -> None:
    """A SIGTERM handled inside `__del__` loses its exception ("Exception ignored in ..."); the
    block must still end in `Terminated` instead of carrying on to publish (the CI flake of
    term-workdir: convert exited 0 after SIGTERM)."""
    from edgelstm.fsutil import Terminated, signals_as_interrupt

    class SignalsOnDelete:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler runs here, inside the finalizer

    carried_on = False
    with pytest.raises(Terminated, match="SIGTERM"), signals_as_interrupt():
        SignalsOnDelete()  # dropped at once
        carried_on = True
    assert carried_on  # the exception was swallowed: only the checkpoint caught the signal
    with signals_as_interrupt():  # a later block starts with a clean record
        pass
