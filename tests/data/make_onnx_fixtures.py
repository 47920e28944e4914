"""Regenerate the PyTorch-exported .onnx fixtures in tests/data/onnx/ (the contract of the ONNX
importer: tests read these files and never need torch).

Run in a separate venv, never in the project's (torch pulls GBs of CUDA from the default index):

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 onnx numpy
    /tmp/torchvenv/bin/python tests/data/make_onnx_fixtures.py

Every module is tiny and seeded. The TorchScript exporter (dynamo=False) files have a dynamic time
axis (so onnxruntime can run a long stream as one sequence, the streaming reference) unless the
name says `static`; `dynamo_*` files come from the default (dynamo) exporter, static shapes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

OUT = Path(__file__).resolve().parent / "onnx"
D, H, T = 4, 8, 12


class LSTMLast(nn.Module):
    """nn.LSTM(batch_first) + Linear on the last step: the most common classifier shape."""

    def __init__(self, layers: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(D, H, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(H, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])


class LSTMSeq(nn.Module):
    """Two-layer LSTM, a Linear + Tanh at every step (many-to-many)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(D, H, num_layers=2, batch_first=True)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(H, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return torch.tanh(self.fc(self.drop(out)))


class GRUTimeMajor(nn.Module):
    """nn.GRU with batch_first=False, Linear on h_n[-1]."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(D, H, num_layers=2)
        self.fc = nn.Linear(H, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        return self.fc(h[-1])


class GRUSeq(nn.Module):
    """nn.GRU(batch_first) + Linear + Sigmoid per step: streamable."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(D, H, batch_first=True)
        self.fc = nn.Linear(H, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return torch.sigmoid(self.fc(out))


class BiLSTM(nn.Module):
    """Bidirectional LSTM; the forward and backward final states concatenated into a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(D, H, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * H, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(x)
        return self.fc(torch.cat([h[-2], h[-1]], dim=-1))


class BiGRUSeq(nn.Module):
    """Bidirectional GRU, the whole sequence into a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(D, H, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * H, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.fc(out)


class EmbedGRU(nn.Module):
    """Token ids -> nn.Embedding -> GRU -> Linear -> Softmax at every step (char-level LM)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 6)
        self.gru = nn.GRU(6, H, batch_first=True)
        self.fc = nn.Linear(H, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.emb(x))
        return torch.softmax(self.fc(out), dim=-1)


class RNNModel(nn.Module):
    """nn.RNN with tanh or relu, then Linear on the last step."""

    def __init__(self, nonlinearity: str) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, H, batch_first=True, nonlinearity=nonlinearity)
        self.fc = nn.Linear(H, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class CausalConvLSTM(nn.Module):
    """Causal Conv1d (left padding) + ReLU in front of an LSTM: streamable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(D, 6, kernel_size=3)
        self.lstm = nn.LSTM(6, H, batch_first=True)
        self.fc = nn.Linear(H, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.pad(x.transpose(1, 2), (2, 0))
        y = torch.relu(self.conv(y)).transpose(1, 2)
        out, _ = self.lstm(y)
        return self.fc(out)


class SameConvLSTM(nn.Module):
    """Conv1d(padding=1) looks one step ahead: sequence model only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(D, 6, kernel_size=3, padding=1)
        self.lstm = nn.LSTM(6, H, batch_first=True)
        self.fc = nn.Linear(H, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        out, _ = self.lstm(y)
        return self.fc(out[:, -1])


class LSTMLayerNorm(nn.Module):
    """LSTM -> LayerNorm -> Linear -> ReLU -> Linear (LayerNorm is per step)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(D, H, batch_first=True)
        self.norm = nn.LayerNorm(H)
        self.fc1 = nn.Linear(H, 6)
        self.fc2 = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.fc2(torch.relu(self.fc1(self.norm(out))))


class Residual(nn.Module):
    """A skip connection around the LSTM: not a chain (the refusal case)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(D, D, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return out + x


def _export(
    name: str, module: nn.Module, example: torch.Tensor, time_axis: int | None, batch_axis: int
) -> None:
    module.eval()
    axes = {batch_axis: "batch"}
    if time_axis is not None:
        axes[time_axis] = "time"
    path = OUT / f"{name}.onnx"
    # The TorchScript exporter writes the ONNX LSTM/GRU/RNN ops for nn.LSTM/GRU/RNN (what
    # deployment users get from torch.onnx.export(..., dynamo=False) and older torch).
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": axes, "y": {0: "batch"} if batch_axis == 0 else {}},
        opset_version=17,
        dynamo=False,
    )
    print(f"{path.name}: {path.stat().st_size} bytes")


def _export_dynamo(name: str, module: nn.Module, example: torch.Tensor) -> None:
    """The default exporter of torch >= 2.9 (torch.export + onnxscript): static shapes here, the
    weights inlined (external_data=False) so the fixture is one file."""
    module.eval()
    path = OUT / f"{name}.onnx"
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamo=True,
        external_data=False,
    )
    print(f"{path.name}: {path.stat().st_size} bytes")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    x = torch.randn(1, T, D)
    fixtures = [
        ("lstm_last", LSTMLast(), x, 1, 0),
        ("lstm2_seq", LSTMSeq(), x, 1, 0),
        ("gru2_time_major", GRUTimeMajor(), torch.randn(T, 1, D), 0, 1),
        ("gru_seq", GRUSeq(), x, 1, 0),
        ("bilstm_final", BiLSTM(), x, 1, 0),
        ("bigru_seq", BiGRUSeq(), x, 1, 0),
        ("embed_gru", EmbedGRU(), torch.randint(0, 20, (1, T)), 1, 0),
        ("rnn_tanh", RNNModel("tanh"), x, 1, 0),
        ("rnn_relu", RNNModel("relu"), x, 1, 0),
        ("conv_causal_lstm", CausalConvLSTM(), x, 1, 0),
        ("conv_same_lstm", SameConvLSTM(), x, 1, 0),
        ("lstm_layernorm", LSTMLayerNorm(), x, 1, 0),
        ("lstm_static", LSTMLast(), x, None, 0),
        ("residual", Residual(), x, 1, 0),
    ]
    for name, module, example, t_axis, b_axis in fixtures:
        _export(name, module, example, t_axis, b_axis)
    torch.manual_seed(1)
    _export_dynamo("dynamo_lstm_last", LSTMLast(layers=2), x)
    _export_dynamo("dynamo_bigru_seq", BiGRUSeq(), x)
    return 0


if __name__ == "__main__":
    sys.exit(main())
