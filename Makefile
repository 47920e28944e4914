# One command each, on a fresh machine:
#   make demo   set up, then run the main job (pipeline on the bundled default model)
#   make test   set up, then run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PACKAGES := gcc g++ cmake gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm gcc-arm-linux-gnueabihf qemu-user-static gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc gcc-aarch64-linux-gnu chromium

.PHONY: setup apt demo test lint bench clean pi-check

$(BIN)/edgelstm: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The ARM toolchain and qemu run the C engine on an emulated Cortex-M4 (a bare pytest skips those
# tests without them; `make test` installs them and makes such a skip a failure).
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "installing:$$missing (needs sudo)"; sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	fi

setup: apt $(BIN)/edgelstm

demo: setup
	$(BIN)/edgelstm pipeline --out runs/demo

# The suite, then the runtime side in fresh venvs WITHOUT TensorFlow (litert; tflite-runtime+numpy<2).
test: setup
	EDGELSTM_REQUIRE_TOOLCHAIN=1 $(BIN)/python -m pytest -n 2 --dist loadgroup -p no:cacheprovider --durations=15
	tests/runtime_env_check.sh all
	tests/pi_userland_check.sh all

# Raspberry Pi OS 64/32-bit under qemu-user: Debian 12 arm64/armhf userlands from Debian's packages
# (cached in ~/.cache/edgelstm/pi-userland), the documented extras from PyPI, outputs vs x86-64.
pi-check: setup
	tests/pi_userland_check.sh all

lint: setup
	$(BIN)/ruff check edgelstm tests benchmarks models
	$(BIN)/ruff format --check edgelstm tests

bench: setup
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) runs build *.egg-info
