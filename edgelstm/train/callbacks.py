"""Keras callbacks of the training loop: the progress bar, the stateful-layer reset (TBPTT)."""

from __future__ import annotations

import sys
import time
from typing import Any


def _progress_callback(total_epochs: int, stream: Any = None) -> Any:
    """A progress bar on stderr (stdout carries the command's JSON): a redrawn bar per batch on a
    terminal, one line per epoch otherwise."""
    import keras

    out = stream or sys.stderr
    tty = bool(getattr(out, "isatty", lambda: False)())

    class Progress(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.start = time.perf_counter()
            self.steps = self.params.get("steps") or 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if tty and self.steps:
                done = int(30 * (batch + 1) / self.steps)
                loss = (logs or {}).get("loss", float("nan"))
                out.write(
                    f"\r  epoch {self.epoch + 1}/{total_epochs} [{'#' * done:<30}] "
                    f"loss {float(loss):.4f}"
                )
                out.flush()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            vals = " ".join(f"{k} {float(v):.4f}" for k, v in logs.items())
            elapsed = time.perf_counter() - self.start
            done = int(30 * (epoch + 1) / total_epochs)
            out.write(
                f"{chr(13) if tty else ''}  epoch {epoch + 1}/{total_epochs} "
                f"[{'#' * done:<30}] {vals} ({elapsed:.1f} s)\n"
            )
            out.flush()

    return Progress()


class _ResetStates:
    """Keras callback factory: reset stateful layers at every epoch start (streams restart)."""

    @staticmethod
    def make() -> Any:
        import keras

        class Reset(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                _reset_states(self.model)

        return Reset()


def _reset_states(model: Any) -> None:
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()
