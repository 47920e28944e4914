"""edgelstm.types: the manifest in the forms stages and exporters exchange."""

from __future__ import annotations

import json
from pathlib import Path

from edgelstm.types import Manifest, Variant, as_manifest, manifest_from_dict

DATA = Path(__file__).parent / "data"


def test_as_manifest_takes_the_object_its_json_or_nothing() -> None:
    raw = json.loads((DATA / "manifest.json").read_text())
    m = manifest_from_dict(raw)
    assert as_manifest(None) is None
    assert as_manifest(m) is m
    parsed = as_manifest(raw)
    assert isinstance(parsed, Manifest) and parsed.to_dict() == m.to_dict()
    assert {a.variant for a in parsed.artifacts} <= set(Variant)
    # not a whole manifest (hand-edited, older): no metadata rather than a crash
    assert as_manifest({"artifacts": []}) is None
    assert as_manifest({**raw, "model": {"layers": "?"}}) is None
