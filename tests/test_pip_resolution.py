"""Would `pip install 'edgelstm[EXTRA]'` find a wheel for every dependency on a Raspberry Pi?

Asks the package registry (metadata only, nothing is installed) for each platform a Pi runs:
64-bit Raspberry Pi OS / Debian 12 (aarch64, glibc 2.36) on CPython 3.10-3.13 and 32-bit
Raspberry Pi OS (armv7l, glibc 2.36) on CPython 3.11. pip evaluates environment markers against
the interpreter that runs it, not against `--platform`/`--python-version`, so the dependency tree
is walked here: markers are evaluated for the *target* (packaging.markers), and pip picks one
wheel per requirement (`--no-deps`, the exact platform tags listed: pip matches only those).
PyPI has no armv7l NumPy: there it comes from the OS (python3-numpy, Debian 12: 1.24.2) and must
satisfy every pin. Run as a script for the table: `python tests/test_pip_resolution.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
GLIBC_MINOR = 36  # Debian 12 "bookworm", the base of current Raspberry Pi OS


def _tags(arch: str) -> list[str]:
    tags = [f"manylinux_2_{m}_{arch}" for m in range(17, GLIBC_MINOR + 1)]
    return [f"manylinux2014_{arch}", *tags]


@dataclass
class Target:
    """One platform a Pi user installs on."""

    machine: str  # platform_machine
    python: str  # "3.11"
    os_packages: dict[str, str] = field(default_factory=dict)  # name -> version the OS provides

    @property
    def id(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.machine}"

    def env(self) -> dict[str, str]:
        return {
            "python_version": self.python,
            "python_full_version": f"{self.python}.0",
            "platform_machine": self.machine,
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "extra": "",
        }


AARCH64 = [Target("aarch64", v) for v in ("3.10", "3.11", "3.12", "3.13")]
ARMV7L = Target("armv7l", "3.11", {"numpy": "1.24.2"})  # Debian 12's python3-numpy

# (extras, target, interpreter package that must be among the wheels). A superset case stands for
# its subsets ([runtime,export] for [runtime]) to keep the registry round trips few.
CASES = [
    (("runtime",), AARCH64[0], "ai-edge-litert"),
    *[(("runtime", "export"), t, "ai-edge-litert") for t in AARCH64[1:]],
    (("pi",), AARCH64[1], "tflite-runtime"),
    *[(("pi",), t, "ai-edge-litert") for t in AARCH64[2:]],
    (("pi", "export"), ARMV7L, "tflite-runtime"),
]


def project_requirements(extras: tuple[str, ...], target: Target) -> list[Requirement]:
    """The core dependencies plus the extras' (self-references expanded), markers applied."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = meta["optional-dependencies"]
    reqs: list[Requirement] = []
    todo, seen = [*extras], set()
    raw = list(meta["dependencies"])
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in optional[extra]:
            r = Requirement(line)
            if canonicalize_name(r.name) == canonicalize_name(meta["name"]):
                todo.extend(r.extras)
            else:
                raw.append(line)
    for line in raw:
        r = Requirement(line)
        if r.marker is None or r.marker.evaluate(target.env()):
            reqs.append(r)
    return reqs


def _pip_pick(reqs: list[str], target: Target, workdir: Path) -> dict[str, dict]:
    """pip's choice of one wheel per requirement for the target (no dependencies followed)."""
    report = workdir / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--dry-run",
        "--ignore-installed",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--target",
        str(workdir / "t"),
        "--python-version",
        target.python,
        "--implementation",
        "cp",
        "--abi",
        f"cp{target.python.replace('.', '')}",
        *[a for tag in _tags(target.machine) for a in ("--platform", tag)],
        "--report",
        str(report),
        *reqs,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("WARNING: Location")]
        raise LookupError("\n".join(lines[-6:]) or f"pip exited {proc.returncode}")
    picked = {}
    for item in json.loads(report.read_text())["install"]:
        md = item["metadata"]
        picked[canonicalize_name(md["name"])] = {
            "version": md["version"],
            "wheel": item["download_info"]["url"].rsplit("/", 1)[-1],
            "requires_dist": md.get("requires_dist") or [],
        }
    return picked


def resolve(extras: tuple[str, ...], target: Target) -> dict[str, str]:
    """name -> wheel file (or 'from the OS: VERSION') for the whole dependency tree.

    LookupError naming the requirement when no wheel fits; a pin the OS package does not meet is
    one too."""
    specs: dict[str, SpecifierSet] = {}

    def add(r: Requirement) -> None:
        name = canonicalize_name(r.name)
        specs[name] = specs.get(name, SpecifierSet()) & r.specifier

    for r in project_requirements(extras, target):
        add(r)
    chosen: dict[str, tuple[str, str]] = {}  # name -> (version, wheel)
    with tempfile.TemporaryDirectory(prefix="edgelstm-resolve-") as tmp:
        for _ in range(10):
            todo = []
            for name, spec in specs.items():
                if name in target.os_packages:
                    have = Version(target.os_packages[name])
                    if not spec.contains(have, prereleases=True):
                        raise LookupError(f"{name}{spec}: the OS provides {have}")
                    chosen[name] = (str(have), f"from the OS: {have}")
                elif name not in chosen or not spec.contains(chosen[name][0], prereleases=True):
                    todo.append(f"{name}{spec}")
            if not todo:
                return {n: w for n, (_, w) in sorted(chosen.items())}
            picked = _pip_pick(sorted(todo), target, Path(tmp))
            for name, info in picked.items():
                chosen[name] = (info["version"], info["wheel"])
                for line in info["requires_dist"]:
                    r = Requirement(line)
                    if r.marker is None or r.marker.evaluate(target.env()):
                        add(r)
    raise LookupError("dependency constraints did not settle")


def _registry_reachable() -> bool:
    try:
        resolve_one("click>=8.1", Target("x86_64", "3.11"))
    except (LookupError, subprocess.TimeoutExpired):
        return False
    return True


def _case_id(extras: tuple[str, ...], target: Target) -> str:
    return f"{'+'.join(extras)}-{target.id}"


@pytest.fixture(scope="module")
def resolutions() -> dict[str, dict[str, str] | LookupError]:
    """Every case resolved once, concurrently (the time is registry round trips, not CPU)."""
    if not _registry_reachable():
        msg = "the package registry is not reachable (pip cannot fetch click)"
        if os.environ.get("EDGELSTM_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail(msg)
        pytest.skip(msg)

    def one(case: tuple) -> dict[str, str] | LookupError:
        try:
            return resolve(case[0], case[1])
        except LookupError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, CASES))
    return {_case_id(e, t): r for (e, t, _), r in zip(CASES, results, strict=True)}


def test_markers_keep_x86_only_wheels_off_arm() -> None:
    """No extra a Pi installs pulls tflite-micro (x86-64 wheels only) on any ARM target."""
    for extras in (("runtime",), ("pi",), ("export",), ("runtime", "export"), ("convert",)):
        for target in [*AARCH64, ARMV7L]:
            names = {canonicalize_name(r.name) for r in project_requirements(extras, target)}
            assert "tflite-micro" not in names, (extras, target.id)
    x86 = Target("x86_64", "3.11")
    assert "tflite-micro" in {r.name for r in project_requirements(("convert",), x86)}
    assert Marker("python_version < '3.12'").evaluate(ARMV7L.env())


@pytest.mark.parametrize(
    ("extras", "target", "interpreter"),
    CASES,
    ids=[_case_id(e, t) for e, t, _ in CASES],
)
def test_pi_extras_resolve(resolutions, extras, target: Target, interpreter: str) -> None:
    wheels = resolutions[_case_id(extras, target)]
    if isinstance(wheels, LookupError):
        pytest.fail(f"edgelstm[{','.join(extras)}] on {target.id}: {wheels}")
    assert interpreter in wheels, wheels
    assert "tflite-micro" not in wheels and "tensorflow" not in wheels
    for name, wheel in wheels.items():
        if wheel.startswith("from the OS"):
            continue
        tag = wheel.removesuffix(".whl").rsplit("-", 1)[-1]
        assert tag == "any" or target.machine in tag, (name, wheel)
    if target.machine == "armv7l":
        assert wheels["numpy"].startswith("from the OS")


def test_armv7l_has_no_numpy_or_litert_wheel(resolutions) -> None:
    """Why 32-bit needs the OS's NumPy and tflite-runtime: PyPI has neither wheel for armv7l."""
    for req in ("numpy", "ai-edge-litert"):
        with pytest.raises(LookupError):
            resolve_one(req, ARMV7L)


def resolve_one(req: str, target: Target) -> dict[str, dict]:
    with tempfile.TemporaryDirectory(prefix="edgelstm-resolve-") as tmp:
        return _pip_pick([req], target, Path(tmp))


if __name__ == "__main__":
    status = 0
    for extras, target, _ in CASES:
        label = f"edgelstm[{','.join(extras)}] {target.id}"
        try:
            wheels = resolve(extras, target)
        except LookupError as exc:
            status = 1
            print(f"FAIL {label}: {exc}")
            continue
        print(f"ok   {label}: " + ", ".join(f"{n} ({w})" for n, w in wheels.items()))
    sys.exit(status)
