#!/usr/bin/env bash
# Prove the runtime side of edgelstm installs and runs WITHOUT TensorFlow, in two fresh venvs:
#   1. litert:          pip install '.[runtime,export]'          (numpy 2, click, ai-edge-litert, jinja2)
#   2. tflite-runtime:  pip install '.[pi,export]'  (tflite-runtime, numpy<2, jinja2; --runtime
#                       tflite-runtime and --runtime native, the C engine compiled here).
#                       No ai-edge-litert and no tflite-micro may be installed there: reading a
#                       .tflite needs only the pure-Python `tflite` schema package.
# In each: `edgelstm inspect/profile/stream` on the committed fixtures in tests/data/, and
# `import tensorflow` must fail. The two venvs' stream outputs must agree.
#
# Environment:
#   PYTHON          interpreter for the venvs (default: python3.11, else python3). tflite-runtime
#                   has wheels for Python <= 3.11 only.
#   PIP_CACHE_DIR   pip's cache (honoured by pip itself; set it in CI to avoid re-downloads)
#   WORKDIR         where the venvs go (default: a temp dir, removed on exit)
#   KEEP_WORKDIR=1  keep it
# Usage: tests/runtime_env_check.sh [litert|tflite-runtime|all]     (default: all)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$REPO/tests/data"
WHICH="${1:-all}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [[ -z "${WORKDIR:-}" ]]; then
  WORKDIR="$(mktemp -d -t edgelstm-envcheck-XXXXXX)"
  [[ "${KEEP_WORKDIR:-0}" == 1 ]] || trap 'rm -rf "$WORKDIR"' EXIT
fi
mkdir -p "$WORKDIR"

step() { printf '\n== %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# Install from a clean copy of the sources so the repo gets no build/ or egg-info droppings.
SRC="$WORKDIR/src"
rm -rf "$SRC" && mkdir -p "$SRC"
cp "$REPO/pyproject.toml" "$REPO/README.md" "$SRC/"
(cd "$REPO" && tar --exclude=__pycache__ -cf - edgelstm) | (cd "$SRC" && tar -xf -)
# Run from the work dir: `python -c` puts the current directory first on sys.path, and from the
# repo root that would import the checkout's edgelstm instead of the installed one.
cd "$WORKDIR"

check_venv() {  # name, runtime flag value, pip args...
  local name="$1" runtime="$2"
  shift 2
  local venv="$WORKDIR/venv-$name"
  step "$name: creating $venv with $PYTHON"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  local log="$WORKDIR/pip-$name.log"
  { "$venv/bin/python" -m pip install -q --upgrade pip && "$venv/bin/python" -m pip install "$@"; } \
    >"$log" 2>&1 || { tail -n 30 "$log" >&2; fail "$name: pip install $* failed (log: $log)"; }
  local py="$venv/bin/python" el="$venv/bin/edgelstm"
  "$py" -m pip list 2>/dev/null | grep -i -E '^(numpy|ai-edge-litert|tflite[-_a-z]*|tensorflow|click) ' >&2 || true

  step "$name: TensorFlow must not be importable"
  if "$py" -c "import tensorflow" 2>/dev/null; then fail "$name: tensorflow is importable"; fi
  "$py" -c "import tf_keras" 2>/dev/null && fail "$name: tf_keras is importable"

  if [[ "$name" == tflite-runtime ]]; then
    step "$name: neither ai-edge-litert nor tflite-micro is installed"
    for mod in ai_edge_litert tflite_micro; do
      if "$py" -c "import $mod" 2>/dev/null; then fail "$name: $mod is installed"; fi
    done
  fi

  step "$name: edgelstm inspect"
  for f in "$DATA"/*.tflite; do
    "$el" inspect "$f" >/dev/null
    "$el" inspect "$f" --json | "$py" -c "import json,sys; d=json.load(sys.stdin); assert d['inputs'] and d['macs_per_invoke'] > 0"
  done
  "$el" inspect "$DATA/tiny_sequence_float.tflite" --json \
    | "$py" -c "import json,sys; assert json.load(sys.stdin)['fused_lstm']"

  step "$name: edgelstm profile --runtime $runtime"
  "$el" profile "$DATA"/*.tflite --runtime "$runtime" --runs 50 --warmup 5 \
    --data "$DATA/tiny_eval.npz" --report "$WORKDIR/$name-report.html"
  "$el" -q profile "$DATA/tiny_step_int8.tflite" --runtime "$runtime" --runs 30 --json \
    --data "$DATA/tiny_eval.npz" | "$py" -c "
import json, sys
r = json.load(sys.stdin)['results'][0]
lat = r['latency']
assert r['runtime'] == '$runtime', r['runtime']
assert lat['runs'] == 30 and lat['min_us'] <= lat['p50_us'] <= lat['p99_us'] <= lat['max_us']
assert 0.0 <= r['accuracy'] <= 1.0
"
  grep -q "<table>" "$WORKDIR/$name-report.html" || fail "$name: no table in the HTML report"
  # "xnnpack" says whether the delegate ran (a DELEGATE node), not what was asked for.
  for flag in --xnnpack --no-xnnpack; do
    "$el" -q profile "$DATA/tiny_step_float.tflite" --runtime "$runtime" --runs 3 --json $flag \
      | "$py" -c "import json,sys; r=json.load(sys.stdin)['results'][0]; assert r['xnnpack'] is ('$flag' == '--xnnpack'), r" \
      || fail "$name: profile $flag reports the wrong xnnpack"
  done

  step "$name: edgelstm stream --runtime $runtime"
  printf '0.5,-1,2\n1 0 0\n\n0.5,-1,2\n1 0 0\n' \
    | "$el" stream "$DATA/tiny_step_float.tflite" --runtime "$runtime" >"$WORKDIR/$name-stream.csv"
  "$py" - "$WORKDIR/$name-stream.csv" <<'EOF'
import sys
rows = open(sys.argv[1]).read().split()
assert len(rows) == 4 and rows[:2] == rows[2:], rows  # the blank line reset the state
EOF
  "$py" -c "import numpy as np; np.save('$WORKDIR/samples.npy', np.random.default_rng(0).standard_normal((40, 3)).astype('float32'))"
  "$el" stream "$DATA/tiny_step_float.tflite" --runtime "$runtime" \
    --input "$WORKDIR/samples.npy" --output "$WORKDIR/$name-stream.npy"

  step "$name: bad input exits 2 with one line"
  set +e
  "$el" stream "$DATA/tiny_sequence_float.tflite" --runtime "$runtime" </dev/null 2>"$WORKDIR/err"
  local code=$?
  set -e
  [[ $code == 2 && $(wc -l <"$WORKDIR/err") == 1 ]] || fail "$name: sequence model to stream: exit $code"
  set +e
  "$el" profile "$DATA/tiny_step_float.tflite" --runtime tf 2>"$WORKDIR/err"
  code=$?
  set -e
  [[ $code == 2 ]] && grep -q "tensorflow" "$WORKDIR/err" || fail "$name: --runtime tf did not say what to install"

  step "$name: the runtime modules never imported TensorFlow"
  "$py" - "$DATA" "$runtime" <<'EOF'
import sys
from edgelstm.cli import main  # noqa: F401
import edgelstm.profile, edgelstm.runtime, edgelstm.cli.profile, edgelstm.cli.stream  # noqa: E401,F401
from edgelstm.runtime import StepRunner
r = StepRunner(f"{sys.argv[1]}/tiny_step_int8.tflite", sys.argv[2])
r.push([0.1, 0.2, 0.3])
assert "tensorflow" not in sys.modules
EOF
  echo "$name: OK" >&2
}

case "$WHICH" in
  litert | all) check_venv litert litert "$SRC[runtime,export]" ;;&
  tflite-runtime | all) check_venv tflite-runtime tflite-runtime "$SRC[pi,export]" ;;&
  litert | tflite-runtime | all) ;;
  *) fail "unknown argument '$WHICH' (litert, tflite-runtime or all)" ;;
esac

if [[ "$WHICH" == litert || "$WHICH" == all ]]; then
  # A non-editable install: the zoo and firmware_export/ must come from the wheel itself.
  venv="$WORKDIR/venv-litert"
  step "litert: the wheel carries the zoo and the firmware sources (C export without TensorFlow)"
  "$venv/bin/python" -c "
from edgelstm.paths import bundled_dir
for name in ('firmware_export', 'models'):
    d = bundled_dir(name)
    assert 'site-packages' in str(d) and d.is_dir(), d
"
  # Capture first, then match: piping into an early-exiting grep fails under pipefail (SIGPIPE).
  zoo="$("$venv/bin/edgelstm" zoo list)" || fail "litert: zoo list failed"
  [[ "$zoo" == *temporal-order* ]] || fail "litert: zoo list lacks the zoo"
  "$venv/bin/edgelstm" export "$DATA/tiny_step_int8.tflite" --target c -o "$WORKDIR/c-export" \
    --verify host >/dev/null || fail "litert: export --target c --verify host failed"
  "$venv/bin/python" -c "import tensorflow" 2>/dev/null && fail "litert: tensorflow appeared"
  step "litert: --runtime native (the C engine compiled here, no TensorFlow, no LiteRT calls)"
  export EDGELSTM_CACHE_DIR="$WORKDIR/native-cache"
  "$venv/bin/edgelstm" stream "$DATA/tiny_step_float.tflite" --runtime native \
    --input "$WORKDIR/samples.npy" --output "$WORKDIR/native-stream.npy" \
    || fail "litert: stream --runtime native failed"
  "$venv/bin/edgelstm" -q profile "$DATA/tiny_step_int8.tflite" --runtime native --runtime litert \
    --runs 30 --json >"$WORKDIR/native-profile.json" || fail "litert: profile --runtime native failed"
  "$venv/bin/python" -c "
import json, sys
import numpy as np
a = np.load('$WORKDIR/litert-stream.npy'); b = np.load('$WORKDIR/native-stream.npy')
d = float(np.abs(a - b).max()); print(f'max |litert - native| = {d:.2e}')
assert a.shape == b.shape and d < 1e-5
rows = json.load(open('$WORKDIR/native-profile.json'))['results']
assert [r['runtime'] for r in rows] == ['native', 'litert'] and not any(r['error'] for r in rows)
assert 'tensorflow' not in sys.modules
" || fail "litert: native runtime disagrees with litert"
  unset EDGELSTM_CACHE_DIR
fi

if [[ "$WHICH" == tflite-runtime || "$WHICH" == all ]]; then
  # The 32-bit Pi path's second runtime: the C engine compiled here, its graph read by the
  # portable reader (no ai-edge-litert, no tflite-micro in this venv).
  step "tflite-runtime: --runtime native in the same venv"
  venv="$WORKDIR/venv-tflite-runtime"
  EDGELSTM_CACHE_DIR="$WORKDIR/native-cache-tfr" "$venv/bin/edgelstm" stream \
    "$DATA/tiny_step_float.tflite" --runtime native --input "$WORKDIR/samples.npy" \
    --output "$WORKDIR/tfr-native-stream.npy" || fail "tflite-runtime: stream --runtime native failed"
  "$venv/bin/python" -c "
import numpy as np
a = np.load('$WORKDIR/tflite-runtime-stream.npy'); b = np.load('$WORKDIR/tfr-native-stream.npy')
d = float(np.abs(a - b).max()); print(f'max |tflite-runtime - native| = {d:.2e}')
assert a.shape == b.shape and d < 1e-5
" || fail "tflite-runtime: native runtime disagrees with tflite-runtime"
fi

if [[ "$WHICH" == all ]]; then
  step "litert and tflite-runtime give the same stream outputs"
  "$WORKDIR/venv-tflite-runtime/bin/python" -c "
import numpy as np
a = np.load('$WORKDIR/litert-stream.npy'); b = np.load('$WORKDIR/tflite-runtime-stream.npy')
assert a.shape == b.shape == (40, 3), (a.shape, b.shape)
d = float(np.abs(a - b).max()); print(f'max |litert - tflite-runtime| = {d:.2e}')
assert d < 1e-5
"
fi
echo "runtime_env_check: all OK" >&2
