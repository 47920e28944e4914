#!/usr/bin/env bash
# Prove the Raspberry Pi path without a Pi: Debian 12 (bookworm) arm64 and armhf userlands built
# from Debian's packages (tests/pi/userland.sh: `apt-get download` + `dpkg -x`, no booting, host
# dpkg state untouched), run under qemu-user (qemu-aarch64-static / qemu-arm-static, called
# explicitly with `-L ROOTFS`: binfmt_misc need not be registered, no chroot, no mounts).
# Inside the emulated Debian Python, as a Pi user would:
#   arm64 (64-bit Raspberry Pi OS): venv, pip install 'edgelstm[runtime]' (ai-edge-litert) from PyPI
#   armhf (32-bit Raspberry Pi OS): venv --system-site-packages + Debian's python3-numpy (PyPI has
#                                   no armv7l NumPy), pip install 'edgelstm[pi]' (tflite-runtime)
# then `edgelstm --help`, `inspect --json`, `profile --json`, `stream` on the committed models in
# tests/data/ and the zoo's echo model (converted here on x86 first). tests/pi/compare.py checks
# the outputs against the same commands run on x86-64 with the host .venv (LiteRT): inspect
# identical, stream int8 bit-exact (the LSB distance is always printed) and float within 1e-5,
# profile accuracy identical. Also a cheap pip resolution check for cp311/cp312/cp313 aarch64.
#
# Emulated timings are meaningless: any figure printed here says "(emulated; not Pi speed)".
#
# /proc/cpuinfo: qemu-user shows the guest the HOST's /proc/cpuinfo (x86). The cpuinfo library
# inside LiteRT/tflite-runtime then misreads the CPU (measured: ai-edge-litert 2.3.0 segfaults
# creating an Interpreter on aarch64; the issue saw XNNPACK silently dropped). A Pi's kernel shows
# an ARM cpuinfo, so the rootfs gets one (Cortex-A72 = Pi 4 for arm64, Cortex-A7 for armhf,
# matching the -cpu given to qemu); `qemu -L` serves /proc/cpuinfo from the rootfs. The x86-cpuinfo
# behaviour is probed once per arch and reported (not asserted).
#
# Environment:
#   EDGELSTM_PI_CACHE     userland/rootfs cache (default ~/.cache/edgelstm/pi-userland)
#   EDGELSTM_PI_REFRESH=1 rebuild the userlands
#   EDGELSTM_PI_CPU_ARM64 / EDGELSTM_PI_CPU_ARMHF   qemu -cpu (default cortex-a72 / cortex-a7)
#   EDGELSTM_PI_INT8_MAX_LSB  allowed int8 distance from x86 (default 0 = bit-exact)
#   WORKDIR, KEEP_WORKDIR=1   where the venvs/outputs go (default: a temp dir, removed on exit)
# Usage: tests/pi_userland_check.sh [arm64|armhf|all]   (default: all)
set -euo pipefail

START=$SECONDS
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$REPO/tests/data"
WHICH="${1:-all}"
case "$WHICH" in arm64 | armhf | all) ;; *) echo "usage: $0 [arm64|armhf|all]" >&2; exit 2 ;; esac
HOSTPY="$REPO/.venv/bin/python"
HOSTEL="$REPO/.venv/bin/edgelstm"
# The host venv's editable install maps `edgelstm` to its own checkout; PYTHONPATH makes the x86
# reference run THIS checkout's code (the same the wheel is built from) wherever the venv points.
HOST=(env PYTHONPATH="$REPO" "$HOSTEL")
if [[ -z "${WORKDIR:-}" ]]; then
  WORKDIR="$(mktemp -d -t edgelstm-picheck-XXXXXX)"
  [[ "${KEEP_WORKDIR:-0}" == 1 ]] || trap 'rm -rf "$WORKDIR"' EXIT
fi
mkdir -p "$WORKDIR"
OUT="$WORKDIR/out"

step() { printf '\n== [%4ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

[[ -x "$HOSTEL" ]] || fail "$HOSTEL missing: run 'make setup' first"
for q in qemu-aarch64-static qemu-arm-static; do
  command -v "$q" >/dev/null || fail "$q not found (apt-get install qemu-user-static; 'make setup' does)"
done
command -v dpkg >/dev/null && command -v apt-get >/dev/null || fail "needs apt-get and dpkg (Debian)"

# --- the wheel of this checkout (pure Python), built once on x86 from a clean copy -----------------
step "building the edgelstm wheel of this checkout"
SRC="$WORKDIR/src"
rm -rf "$SRC" && mkdir -p "$SRC"
cp "$REPO/pyproject.toml" "$REPO/README.md" "$SRC/"
(cd "$REPO" && tar --exclude=__pycache__ -chf - edgelstm) | (cd "$SRC" && tar -xf -)
rm -rf "$WORKDIR/wheel"  # pip keeps an existing wheel of the same name instead of replacing it
"$REPO/.venv/bin/pip" wheel -q --no-deps -w "$WORKDIR/wheel" "$SRC" >"$WORKDIR/wheel.log" 2>&1 \
  || { tail -n 20 "$WORKDIR/wheel.log" >&2; fail "building the wheel failed"; }
WHEEL="$(compgen -G "$WORKDIR/wheel/edgelstm-*.whl")"

# Every part runs even when an earlier one failed (one run shows every problem); the exit code
# is 1 if any failed.
FAILED=()
# The cheap resolution check (cp310-cp313 aarch64, cp311 armv7l, markers evaluated for the target)
# is tests/test_pip_resolution.py, which the pytest run of `make test` covers; a shell variant is
# called when present.
if [[ -x "$REPO/tests/pip_resolution_check.sh" ]]; then
  step "pip resolution check (tests/pip_resolution_check.sh)"
  "$REPO/tests/pip_resolution_check.sh" || FAILED+=("tests/pip_resolution_check.sh")
fi

# --- models and inputs ----------------------------------------------------------------------------
# tests/data's fixtures, and the zoo's echo model converted on x86 (step models, float + int8).
step "x86: converting the zoo's echo model (step, float + int8)"
ECHO="$REPO/edgelstm/models/echo"
MODELS="$WORKDIR/models"
mkdir -p "$MODELS"
cp "$DATA"/tiny_step_float.tflite "$DATA"/tiny_step_int8.tflite "$DATA"/tiny_sequence_float.tflite "$MODELS/"
# The all-int8 LSTM cell, which every runtime here runs (tflite-runtime 2.14 has no int8 -> int16
# QUANTIZE); convert's default int16 cell is checked on its own below.
"${HOST[@]}" -q convert "$ECHO/model.keras" -o "$WORKDIR/echo" --variant step --quantize float,int8 \
  --calibration "$ECHO/calibration.npz" --name echo --int8-lstm-cell int8 >"$WORKDIR/echo-convert.log" 2>&1 \
  || { tail -n 20 "$WORKDIR/echo-convert.log" >&2; fail "converting the echo model failed"; }
cp "$WORKDIR/echo/echo_step_float.tflite" "$WORKDIR/echo/echo_step_int8.tflite" "$MODELS/"
mkdir -p "$MODELS/int16cell"
"${HOST[@]}" -q convert "$ECHO/model.keras" -o "$WORKDIR/echo16" --variant step --quantize int8 \
  --calibration "$ECHO/calibration.npz" --name echo >"$WORKDIR/echo16-convert.log" 2>&1 \
  || { tail -n 20 "$WORKDIR/echo16-convert.log" >&2; fail "converting the echo model (int16 cell) failed"; }
cp "$WORKDIR/echo16/echo_step_int8.tflite" "$MODELS/int16cell/"
cp "$DATA/tiny_eval.npz" "$MODELS/tiny_eval.npz"
# Stream inputs: 96 steps, state reset every 32 (exercises the reset path too). The echo eval set
# cut to 16 sequences: each is 32 emulated invokes per step model.
"$HOSTPY" -c "
import numpy as np
d = np.load('$ECHO/eval.npz')
np.savez('$MODELS/echo_eval.npz', **{k: d[k][:16] for k in d.files})
rng = np.random.default_rng(0)
np.save('$MODELS/tiny_samples.npy', rng.standard_normal((96, 3)).astype(np.float32))
np.save('$MODELS/echo_samples.npy', rng.integers(0, 2, (96, 1)).astype(np.float32))
"

# The same commands on every platform; $@ is how to run `edgelstm` there.
run_suite() {  # name runtime cmd...
  local name="$1" runtime="$2"
  shift 2
  local o="$OUT/$name"
  mkdir -p "$o"
  (
    cd "$WORKDIR"  # never the repo root: the checkout's edgelstm must not shadow the installed one
    "$@" --help >"$o/help.txt" || fail "$name: edgelstm --help failed"
    local help
    help="$(<"$o/help.txt")"
    for cmd in inspect profile stream; do
      [[ "$help" == *"$cmd"* ]] || fail "$name: --help does not list '$cmd'"
    done
    for m in "$MODELS"/*.tflite; do
      "$@" inspect "$m" --json >"$o/inspect_$(basename "$m" .tflite).json" \
        || fail "$name: inspect $(basename "$m") failed"
    done
    "$@" inspect "$MODELS/tiny_step_int8.tflite" >"$o/inspect_table.txt" || fail "$name: inspect (table) failed"
    "$@" -q profile "$MODELS"/tiny_*.tflite --runtime "$runtime" --runs 10 --warmup 1 --json \
      --data "$MODELS/tiny_eval.npz" >"$o/profile_tiny.json" || fail "$name: profile (tiny) failed"
    "$@" -q profile "$MODELS"/echo_*.tflite --runtime "$runtime" --runs 10 --warmup 1 --json \
      --data "$MODELS/echo_eval.npz" >"$o/profile_echo.json" || fail "$name: profile (echo) failed"
    for m in "$MODELS"/*_step_*.tflite; do
      local stem fam
      stem="$(basename "$m" .tflite)"
      fam="${stem%%_*}"
      "$@" -q stream "$m" --runtime "$runtime" --input "$MODELS/${fam}_samples.npy" \
        --reset-every 32 --output "$o/stream_$stem.npy" || fail "$name: stream $stem failed"
    done
    # The default int8 step model (LSTM cell in int16): LiteRT runs it; tflite-runtime 2.14 cannot
    # (no int8 -> int16 QUANTIZE) and must say what to do instead, exit 2.
    local rc=0 msg
    msg="$("$@" -q stream "$MODELS/int16cell/echo_step_int8.tflite" --runtime "$runtime" \
      --input "$MODELS/echo_samples.npy" --output "$WORKDIR/stream16_$name.npy" 2>&1)" || rc=$?
    if [ "$runtime" = tflite-runtime ]; then
      { [ "$rc" = 2 ] && grep -q -e "--int8-lstm-cell int8" <<<"$msg"; } \
        || fail "$name: the int16-cell model on tflite-runtime: want exit 2 naming --int8-lstm-cell int8, got $rc: $msg"
    else
      [ "$rc" = 0 ] || fail "$name: stream of the int16-cell echo model failed: $msg"
    fi
    # stdin CSV lines too (the documented quick start): two identical chunks split by a blank line.
    local csv
    csv="$(printf '0.5,-1,2\n1 0 0\n\n0.5,-1,2\n1 0 0\n' | "$@" -q stream "$MODELS/tiny_step_int8.tflite" --runtime "$runtime")" \
      || fail "$name: stream from stdin failed"
    printf '%s\n' "$csv" >"$o/stream_stdin.csv"
  )
}

step "x86-64 reference: host .venv, LiteRT"
run_suite x86_64 litert "${HOST[@]}"

# --- an emulated Pi ---------------------------------------------------------------------------------
fake_cpuinfo() {  # arch -> an ARM /proc/cpuinfo like the Pi kernel's, one entry per host CPU
  local arch="$1" n i
  n="$(nproc)"
  for ((i = 0; i < n; i++)); do
    if [[ "$arch" == arm64 ]]; then
      printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
      printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    else
      printf 'processor\t: %d\nmodel name\t: ARMv7 Processor rev 5 (v7l)\nBogoMIPS\t: 38.40\n' "$i"
      printf 'Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm\n'
      printf 'CPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\nCPU part\t: 0xc07\nCPU revision\t: 5\n\n'
    fi
  done
  printf 'Hardware\t: BCM2835\nModel\t\t: Raspberry Pi (emulated by qemu-user)\n'
}

check_arch() {  # arch
  local arch="$1" qemu cpu runtime extra venv_flags pkgs
  if [[ "$arch" == arm64 ]]; then
    qemu=qemu-aarch64-static cpu="${EDGELSTM_PI_CPU_ARM64:-cortex-a72}"
    runtime=litert extra=runtime venv_flags=()
    pkgs=(python3 python3-venv python3-pip ca-certificates libstdc++6)
  else
    qemu=qemu-arm-static cpu="${EDGELSTM_PI_CPU_ARMHF:-cortex-a7}"
    runtime=tflite-runtime extra=pi venv_flags=(--system-site-packages)
    pkgs=(python3 python3-venv python3-pip ca-certificates libstdc++6 python3-numpy)
  fi
  step "$arch: Debian 12 userland (${pkgs[*]})"
  local rootfs
  rootfs="$("$REPO/tests/pi/userland.sh" "$arch" "${pkgs[@]}" | tail -n 1)"
  [[ -x "$rootfs/usr/bin/python3" ]] || fail "$arch: no python3 in $rootfs"
  local -a Q=("$qemu" -L "$rootfs" -cpu "$cpu")
  local venv="$WORKDIR/venv-$arch" py
  py="$venv/bin/python"

  step "$arch: venv ${venv_flags[*]} with Debian's pip, pip install 'edgelstm[$extra]' from PyPI ($qemu -cpu $cpu)"
  rm -f "$rootfs/proc/cpuinfo"
  mkdir -p "$rootfs/proc"
  fake_cpuinfo "$arch" >"$rootfs/proc/cpuinfo"
  # `python3 -m venv` installs pip by running ensurepip in a child process, and a child aarch64
  # process cannot start without binfmt_misc. So: the venv without pip, then the same pip wheel
  # ensurepip would use (Debian's python3-pip-whl) installs itself into it, in-process.
  rm -rf "$venv"
  "${Q[@]}" "$rootfs/usr/bin/python3" -m venv --without-pip "${venv_flags[@]}" "$venv"
  local pipwhl
  local wheels=("$rootfs"/usr/share/python-wheels/pip-*.whl)
  pipwhl="${wheels[0]}"
  [[ -f "$pipwhl" ]] || fail "$arch: no pip wheel in $rootfs/usr/share/python-wheels (python3-pip-whl)"
  local log="$OUT/pip-$arch.log"
  mkdir -p "$OUT"
  # --only-binary: a source build would need a child process (see above); a Pi install of these
  # extras is wheels-only anyway. --no-compile: byte-compiling under emulation is slow and changes
  # nothing that is checked.
  { "${Q[@]}" "$py" "$pipwhl/pip" install --no-index --no-compile "$pipwhl" \
    && "${Q[@]}" "$py" -m pip install --no-compile --only-binary=:all: "$WHEEL[$extra]"; } >"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; fail "$arch: pip install 'edgelstm[$extra]' failed (log: $log)"; }
  local freeze
  freeze="$("${Q[@]}" "$py" -m pip list 2>/dev/null)" || fail "$arch: pip list failed"
  printf '%s\n' "$freeze" >"$OUT/pip-list-$arch.txt"
  grep -i -E '^(numpy|ai-edge-litert|tflite[-_a-z]*|click|edgelstm) ' "$OUT/pip-list-$arch.txt" \
    | sed "s/^/  $arch: /" >&2 || true
  local machine
  machine="$("${Q[@]}" "$py" -c 'import platform; print(platform.machine(), *platform.libc_ver())')"
  echo "  $arch: emulated platform: $machine" >&2

  step "$arch: edgelstm --help / inspect / profile --json / stream --runtime $runtime"
  run_suite "$arch" "$runtime" "${Q[@]}" "$py" "$venv/bin/edgelstm"

  # Does the XNNPACK delegate really apply? The backend reports it (a DELEGATE node in the
  # interpreter's graph). Probed with the Pi-like ARM cpuinfo and with the host's x86 one (what
  # bare qemu-user shows); reported, not asserted (the profile JSON's "xnnpack" is in the summary).
  local cond rc err
  for cond in arm x86; do
    [[ "$cond" == x86 ]] && rm -f "$rootfs/proc/cpuinfo"
    err="$OUT/$arch/xnnpack_probe_$cond.txt"
    rc=0
    # In a subshell with its stderr discarded: bash's own "Segmentation fault" job notice is
    # expected for the x86 probe; the verdict below reports it.
    ("${Q[@]}" "$py" -c "
from edgelstm.runtime.stream import StepRunner
r = StepRunner('$MODELS/tiny_step_float.tflite', '$runtime')
r.push([0.1, 0.2, 0.3])
print(f'xnnpack={r.backend.xnnpack}')
" >"$err" 2>&1 || exit $?) 2>/dev/null || rc=$?
    local text verdict
    text="$(<"$err")"
    if ((rc != 0)); then
      verdict="crashed: exit $rc$([[ $rc == 139 ]] && echo ' (SIGSEGV)')"
    elif [[ "$text" == *"xnnpack=True"* ]]; then
      verdict="runs, XNNPACK applied"
    elif [[ "$text" == *"xnnpack=False"* ]]; then
      verdict="runs, XNNPACK NOT applied (builtin kernels)"
    else
      verdict="runs, XNNPACK unknown"
    fi
    echo "  $arch: $runtime with $cond /proc/cpuinfo: $verdict" >&2
    printf '%s\n' "$verdict" >"$OUT/$arch/xnnpack_probe_$cond.verdict"
  done
  fake_cpuinfo "$arch" >"$rootfs/proc/cpuinfo"

  step "$arch: outputs vs x86-64"
  "$HOSTPY" "$REPO/tests/pi/compare.py" "$OUT" "$arch" || fail "$arch: outputs differ from x86-64"
}

for arch in arm64 armhf; do
  [[ "$WHICH" == all || "$WHICH" == "$arch" ]] || continue
  # errexit is ignored inside `( ... ) || ...`; switch it off here and on in the subshell instead.
  set +e
  (set -e; check_arch "$arch")
  rc=$?
  set -e
  ((rc == 0)) || FAILED+=("$arch")
done
if ((${#FAILED[@]} > 0)); then
  step "pi_userland_check: FAILED: ${FAILED[*]} ($((SECONDS - START)) s)"
  exit 1
fi
step "pi_userland_check: all OK in $((SECONDS - START)) s (wall time of the whole check)"
