"""`edgelstm convert model.pt --example-input-shape 1,T,D`: export to ONNX in-process, then import.

Optional: needs torch, which edgelstm never depends on. TorchScript files (torch.jit.save) load
without running code; a pickled nn.Module (torch.save(model)) runs code from the file when loaded,
so it needs --unsafe, as Keras Lambda layers do.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from edgelstm.errors import BadInputError, MissingDependencyError


def export_torch(
    path: Path, shape: tuple[int, ...] | None, out: Path, *, unsafe: bool = False
) -> Path:
    """Write `out` (.onnx) from the PyTorch file `path` with an example input of `shape`."""
    if not shape:
        raise BadInputError(
            f"{path}: a PyTorch file needs --example-input-shape 1,T,D (or 1,T for token ids) "
            "to be exported; or export it yourself with torch.onnx.export and pass the .onnx"
        )
    if len(shape) not in (2, 3) or any(d < 1 for d in shape):
        raise BadInputError(
            f"--example-input-shape {','.join(map(str, shape))}: expected 1,T,D or 1,T"
        )
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "converting a PyTorch .pt file") from None
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    module = _load(torch, path, unsafe)
    if len(shape) == 2:
        example = torch.zeros(shape, dtype=torch.int64)
    else:
        example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    module.eval()
    try:
        torch.onnx.export(
            module,
            (example,),
            str(out),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    except Exception as exc:
        raise BadInputError(
            f"{path}: torch.onnx.export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None
    return out


def _load(torch: Any, path: Path, unsafe: bool) -> Any:
    try:
        with zipfile.ZipFile(path) as zf:
            scripted = any(n.endswith("constants.pkl") for n in zf.namelist())
    except zipfile.BadZipFile:
        raise BadInputError(f"{path}: not a PyTorch file (torch.save / torch.jit.save)") from None
    if scripted:
        return torch.jit.load(str(path), map_location="cpu")
    if not unsafe:
        raise BadInputError(
            f"{path}: a pickled nn.Module runs code from the file when loaded; rerun with --unsafe "
            "if you trust it (or save it with torch.jit.save, or export to .onnx)"
        )
    obj = torch.load(str(path), map_location="cpu", weights_only=False)
    if not isinstance(obj, torch.nn.Module):
        raise BadInputError(
            f"{path}: holds a {type(obj).__name__} (a state_dict?), not a model: a state_dict has "
            "no architecture; export the nn.Module to ONNX with torch.onnx.export"
        )
    return obj
