"""The quantize stage's option checks, run before any work."""

from __future__ import annotations

from edgelstm.errors import BadInputError
from edgelstm.types import Quantization, QuantizeConfig


def check_config(cfg: QuantizeConfig) -> None:
    """Refuse inconsistent options before any work (BadInputError naming the option)."""
    from edgelstm.quantize.prune import check_sparsity

    if cfg.prune is not None:
        check_sparsity(cfg.prune)
    if cfg.qat and cfg.recipe is None:
        raise BadInputError("--qat needs --recipe NAME (the fine-tuning data and its metric)")
    if cfg.samples < 1:
        raise BadInputError("--samples must be at least 1")
    if cfg.qat and cfg.qat_epochs < 1:
        raise BadInputError("--epochs must be at least 1")
    if cfg.qat and cfg.qat_samples < 1:
        raise BadInputError("--qat-samples must be at least 1")
    quants = [q for q in cfg.quantizations if q != Quantization.FLOAT]
    if not quants and cfg.prune is None and not cfg.qat:
        raise BadInputError("--quantize needs at least one of int8, int16x8, dynamic, float16")
    missing = [q for q in quants if q.needs_calibration]
    if missing and not cfg.calibration and cfg.recipe is None:
        raise BadInputError(
            f"--quantize {missing[0].value} needs --calibration FILE (.npy or .npz with key 'x') "
            "or --recipe NAME"
        )
    if cfg.stream_len < 1:
        raise BadInputError("--stream-len must be at least 1")
