"""Layers that point one way: a module may import only from its own layer or the ones below.

The order is declared here, from the ground up; every `import edgelstm...` in the package (lazy
imports inside functions included) is checked against it. Imports between the two sides of a
shared layer (convert and export; train and quantize; zoo and profile) count as violations too.
The few back-edges that exist are listed with the reason they remain; the list may only shrink:
an edge in it that no longer exists fails the test too, so a fix has to delete its line.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "edgelstm"

# (layer, module prefixes); in the layers named in SIDES each prefix is a side of its own
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "ground",
        (
            "edgelstm",  # the package root: __version__ only
            "edgelstm.errors",
            "edgelstm.arrays",
            "edgelstm.types",
            "edgelstm.fsutil",
            "edgelstm.paths",
            "edgelstm._tf",
            "edgelstm.tflite_info",
            "edgelstm.tflite",
            "edgelstm.report",
        ),
    ),
    ("codegen", ("edgelstm.codegen",)),
    ("runtime", ("edgelstm.runtime",)),
    ("convert|export", ("edgelstm.convert", "edgelstm.export")),
    (
        "zoo|profile",
        (
            "edgelstm.zoo",
            "edgelstm.profile",
            "edgelstm.report_html",
            "edgelstm.explain",
            "edgelstm.evaluate",
        ),
    ),
    ("train|quantize", ("edgelstm.train", "edgelstm.quantize")),
    ("pipeline", ("edgelstm.pipeline", "edgelstm.search")),
    ("cli", ("edgelstm.cli", "edgelstm.__main__")),
]

# Layers whose parts stand side by side and must not import each other.
SIDES = {"convert|export", "train|quantize"}

# importer -> imported: why it is still there (issue #20 tracks removing them)
KNOWN_BACK_EDGES: dict[tuple[str, str], str] = {}


def _module(path: Path, pkg: Path = PKG) -> str:
    parts = path.relative_to(pkg.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _place(module: str) -> tuple[int, str]:
    """(layer index, the side within the layer: the longest matching prefix)."""
    best: tuple[int, str] | None = None
    for i, (_name, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (
                best is None or len(p) > len(best[1])
            ):
                best = (i, p)
    assert best is not None, f"{module} is in no declared layer: add it to LAYERS"
    return best


def _side(module: str) -> str:
    """Sides of a shared layer: the first two name parts (edgelstm.convert vs edgelstm.export)."""
    return ".".join(module.split(".")[:2])


def import_edges(pkg: Path = PKG) -> set[tuple[str, str]]:
    edges = set()
    for f in sorted(pkg.rglob("*.py")):
        src = _module(f, pkg)
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
            else:
                continue
            edges.update((src, t) for t in targets if t.split(".")[0] == "edgelstm")
    return edges


def back_edges(pkg: Path = PKG) -> set[tuple[str, str]]:
    bad = set()
    for src, dst in import_edges(pkg):
        (ls, _), (ld, pd) = _place(src), _place(dst)
        if pd == "edgelstm" and dst == "edgelstm":
            continue  # `from edgelstm import __version__`
        if ld > ls:
            bad.add((src, dst))
        elif ld == ls and LAYERS[ls][0] in SIDES and _side(src) != _side(dst):
            bad.add((src, dst))  # the two sides of a shared layer stay independent
    return bad


def test_every_module_has_a_layer() -> None:
    for f in PKG.rglob("*.py"):
        _place(_module(f))


def test_imports_point_down_the_layers() -> None:
    found = back_edges()
    new = sorted(found - set(KNOWN_BACK_EDGES))
    assert not new, "imports that point up (or across) the declared layers:\n" + "\n".join(
        f"  {a} -> {b}" for a, b in new
    )
    gone = sorted(set(KNOWN_BACK_EDGES) - found)
    assert not gone, "fixed back-edges still listed in KNOWN_BACK_EDGES: " + ", ".join(
        f"{a} -> {b}" for a, b in gone
    )


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The check itself works: on a small package tree, an upward lazy import and an import
    across the two sides of convert|export are reported; downward ones are not."""
    pkg = tmp_path / "edgelstm"
    files = {
        "runtime/stream.py": "def f():\n    from edgelstm.pipeline import run\n",
        "convert/a.py": "import edgelstm.export.tflm\nfrom edgelstm.runtime import stream\n",
        "pipeline.py": "from edgelstm.convert import a\nfrom edgelstm import errors\n",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    assert back_edges(pkg) == {
        ("edgelstm.runtime.stream", "edgelstm.pipeline"),
        ("edgelstm.convert.a", "edgelstm.export.tflm"),
    }
