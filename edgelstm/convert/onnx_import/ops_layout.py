"""Layout and selection ops: they relabel the traced tensor's axes or pick from it (Gather on
a weight table hands over to the embedding of ops_conv).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelstm.convert.onnx_import.common import (
    Act,
    Layer,
    _attrs,
    _clamp,
    _keras_name,
    _refuse,
    _replace,
)
from edgelstm.convert.onnx_import.core import _TracerCore


class LayoutOps(_TracerCore):
    """Shape, Identity, Dropout, Transpose, Squeeze, Unsqueeze, Flatten, Reshape; Gather, Slice,
    Concat."""

    # --- layout ops ------------------------------------------------------------------------------

    def op_Shape(self, node: Any) -> None:
        a = self.act_in(node)
        at = _attrs(node)
        n = len(a.sizes)
        lo, hi = _clamp(at.get("start", 0), n), _clamp(at.get("end", n), n)
        self.values[node.output[0]] = np.asarray(a.sizes[lo:hi], np.int64)

    def op_Identity(self, node: Any) -> None:
        self.set_out(node, self.act_in(node))

    def op_Dropout(self, node: Any) -> None:
        self.set_out(node, self.act_in(node))  # inference: the identity

    def op_Transpose(self, node: Any) -> None:
        a = self.act_in(node)
        perm = _attrs(node).get("perm", list(range(len(a.labels)))[::-1])
        self.set_out(node, _replace(a, [a.labels[p] for p in perm], [a.sizes[p] for p in perm]))

    def _axes(self, node: Any, rank: int) -> list[int]:
        attrs = _attrs(node)
        if len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in self.need_const(node, node.input[1], "axes").reshape(-1)]
        else:
            axes = list(attrs.get("axes", []))
        return [ax % rank for ax in axes]

    def op_Squeeze(self, node: Any) -> None:
        a = self.act_in(node)
        axes = self._axes(node, len(a.labels)) or [i for i, s in enumerate(a.sizes) if s == 1]
        if any(a.sizes[i] != 1 for i in axes):
            raise _refuse(node, "squeezes an axis that is not of size 1")
        keep = [i for i in range(len(a.labels)) if i not in axes]
        self.set_out(node, _replace(a, [a.labels[i] for i in keep], [a.sizes[i] for i in keep]))

    def op_Unsqueeze(self, node: Any) -> None:
        a = self.act_in(node)
        rank = len(a.labels) + len(self._axes(node, len(a.labels) + 1))
        axes = sorted(self._axes(node, rank))
        labels, sizes = list(a.labels), list(a.sizes)
        for ax in axes:
            labels.insert(ax, "1")
            sizes.insert(ax, 1)
        self.set_out(node, _replace(a, labels, sizes))

    def op_Flatten(self, node: Any) -> None:
        a = self.act_in(node)
        axis = _attrs(node).get("axis", 1) % max(len(a.labels), 1)
        lead = int(np.prod(a.sizes[:axis]))
        self._reshape(node, a, [lead, int(np.prod(a.sizes[axis:]))])

    def op_Reshape(self, node: Any) -> None:
        a = self.act_in(node)
        shape = [int(v) for v in self.need_const(node, node.input[1], "the target shape")]
        shape = [a.sizes[i] if s == 0 and i < len(a.sizes) else s for i, s in enumerate(shape)]
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1]))
            shape[shape.index(-1)] = int(np.prod(a.sizes)) // max(known, 1)
        self._reshape(node, a, shape)

    def _reshape(self, node: Any, a: Act, shape: list[int]) -> None:
        src = [(lab, s) for lab, s in zip(a.labels, a.sizes, strict=True) if s > 1]
        labels: list[str] = []
        final = a.final
        j = 0
        flatten = False
        for s in shape:
            if s == 1:
                labels.append("B" if "B" in a.labels and "B" not in labels else "1")
                continue
            group = []
            prod = 1
            while j < len(src) and prod < s:
                group.append(src[j][0])
                prod *= src[j][1]
                j += 1
            if prod != s:
                raise _refuse(node, f"reshape to {shape} splits an axis of {a.sizes}")
            if len(group) == 1:
                labels.append(group[0])
            elif group == ["D", "F"]:
                labels.append("F")  # the directions side by side: Keras' concat merge
            elif group == ["T", "F"]:
                labels.append("F")
                flatten = True
            else:
                raise _refuse(node, f"reshape merges the axes {group} (from {a.labels})")
        if "D" in labels and final is not None and a.axis("D") is not None:
            pass  # still stacked
        if flatten:
            self.head(node, a)
            a = self.materialize(node, a)
            pos = self.add(
                Layer("Flatten", _keras_name(node.name or "flatten", self.names), node.name, {}, [])
            )
            self.set_out(node, Act(labels, [max(s, 1) for s in shape], pos))
            return
        self.set_out(node, _replace(a, labels, list(shape)))

    # --- selection -------------------------------------------------------------------------------

    def op_Gather(self, node: Any) -> None:
        data = self.values.get(node.input[0])
        if isinstance(data, np.ndarray):
            return self._embedding(node, data)
        a = self.act_in(node)
        idx = self.need_const(node, node.input[1], "the gather index")
        axis = _attrs(node).get("axis", 0) % len(a.labels)
        if idx.size != 1:
            raise _refuse(node, "gathers several entries of an axis")
        i = int(idx.reshape(-1)[0]) % a.sizes[axis]
        labels = [lab for k, lab in enumerate(a.labels) if k != axis]
        sizes = [s for k, s in enumerate(a.sizes) if k != axis]
        if idx.ndim == 1:
            labels.insert(axis, "1")
            sizes.insert(axis, 1)
        self._select(node, a, axis, i, labels, sizes)

    def op_Slice(self, node: Any) -> None:
        a = self.act_in(node)
        starts = self.need_const(node, node.input[1], "starts").reshape(-1)
        ends = self.need_const(node, node.input[2], "ends").reshape(-1)
        axes = (
            self.need_const(node, node.input[3], "axes").reshape(-1)
            if len(node.input) > 3 and node.input[3]
            else np.arange(len(starts))
        )
        steps = (
            self.need_const(node, node.input[4], "steps").reshape(-1)
            if len(node.input) > 4 and node.input[4]
            else np.ones(len(starts), np.int64)
        )
        out = a
        for st, en, ax, sp in zip(starts, ends, axes, steps, strict=True):
            ax = int(ax) % len(a.labels)
            n = out.sizes[ax]
            lo, hi = _clamp(int(st), n), _clamp(int(en), n)
            if int(sp) != 1:
                raise _refuse(node, "slices with a step other than 1")
            if lo == 0 and hi == n:
                continue
            lab = out.labels[ax]
            if lab == "T" and out.trim and lo == 0 and hi == n - out.trim:
                sizes = list(out.sizes)
                sizes[ax] = hi
                out = _replace(out, list(out.labels), sizes, trim=0)
            elif lab in ("T", "D") and hi - lo == 1:
                labels, sizes = list(out.labels), list(out.sizes)
                labels[ax], sizes[ax] = "1", 1
                self._select(node, out, ax, lo, labels, sizes)
                out = self.values[node.output[0]]
            else:
                raise _refuse(node, f"slices {lab} axis [{lo}:{hi}] of {n}")
        self.set_out(node, out)

    def _select(
        self, node: Any, a: Act, axis: int, i: int, labels: list[str], sizes: list[int]
    ) -> None:
        lab = a.labels[axis]
        if lab == "D" and a.final is not None:
            self.set_out(node, Act(labels, sizes, a.pos, final=[a.final[i]]))
        elif lab == "T":
            if i != a.sizes[axis] - 1:
                raise _refuse(node, f"selects time step {i}; only the last one is supported")
            self.head(node, a)
            self.last_step(node, a)
            self.set_out(node, Act(labels, sizes, a.pos, dense=None))
        elif a.sizes[axis] == 1:
            self.set_out(node, _replace(a, labels, sizes))
        else:
            raise _refuse(node, f"selects entry {i} of the {lab} axis")

    def op_Concat(self, node: Any) -> None:
        parts = [self.values.get(n) for n in node.input]
        if not all(isinstance(p, Act) and p.final is not None for p in parts):
            raise _refuse(
                node,
                "concatenates tensors computed from the input (a branch)",
                "torch.cat of final states h_n (of the last layer's directions)",
            )
        first = parts[0]
        axis = _attrs(node)["axis"] % len(first.labels)
        lab = first.labels[axis]
        final = [e for p in parts for e in p.final]  # type: ignore[union-attr]
        sizes = list(first.sizes)
        sizes[axis] = sum(p.sizes[axis] for p in parts)  # type: ignore[union-attr]
        labels = list(first.labels)
        if lab == "1" and first.sizes[axis] == 1:
            labels[axis] = "D"
        self.set_out(node, Act(labels, sizes, max(p.pos for p in parts), final=final))  # type: ignore[union-attr]
