"""The matmul-bound limit of a workload: how long its matrix multiplies take on their own.

A square 2048 x 2048 matmul is the CPU's best case; the update's matmuls have other shapes
(e.g. ``[1024, 256] @ [256, 768]``) and strides (transposed weights in the backward pass),
which may run slower (on this CPU they do only for the smallest presets). `MatmulRecorder`
records every ``mm``, ``addmm`` and ``bmm`` a workload runs (shapes, strides, dtype);
`alone_seconds` replays each distinct call by itself on random operands of the same layout.
The sum is the time the workload would take if everything but its matrix multiplies were
free, so

* ``gflop / alone_s / peer`` is the best fraction of the square-matmul peer the workload
  could reach at its shapes, and
* ``alone_s / actual_s`` is the share of its time spent at that limit.

    with MatmulRecorder() as rec:
        agent.train(batch)
    gflop, alone_s = alone_seconds(rec.calls)
"""

from __future__ import annotations

import time
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
MATMULS = {aten.mm.default: "mm", aten.addmm.default: "addmm", aten.bmm.default: "bmm"}
Layout = tuple[tuple[int, ...], tuple[int, ...]]  # (shape, stride) of one operand


class MatmulRecorder(TorchDispatchMode):
    """Counts the matmul calls run under it: ``calls[(op, dtype, operand layouts)] = n``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[tuple[str, torch.dtype, tuple[Layout, ...]]] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if func in MATMULS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            layouts = tuple((tuple(t.shape), tuple(t.stride())) for t in tensors)
            self.calls[(MATMULS[func], tensors[-1].dtype, layouts)] += 1
        return func(*args, **(kwargs or {}))


def matmul_flops(op: str, layouts: tuple[Layout, ...]) -> int:
    """FLOPs of one call: 2 m k n (times the batch for ``bmm``; ``addmm``'s add not counted,
    as torch's FlopCounterMode does)."""
    a, b = (shape for shape, _ in layouts[-2:])
    batch = a[0] if op == "bmm" else 1
    return 2 * batch * a[-2] * a[-1] * b[-1]


def _operand(layout: Layout, dtype: torch.dtype) -> torch.Tensor:
    """Random values with exactly this shape and stride (expanded strides share storage)."""
    shape, stride = layout
    size = 1 + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
    return torch.randn(size).to(dtype).as_strided(shape, stride)


def alone_seconds(calls: Counter, repeats: int = 3) -> tuple[float, float]:
    """(GFLOP, seconds) of the recorded calls, each timed alone after one warm-up call."""
    gflop = seconds = 0.0
    for (op, dtype, layouts), count in calls.items():
        operands = [_operand(layout, dtype) for layout in layouts]
        fn = getattr(torch, op)
        fn(*operands)
        start = time.perf_counter()
        for _ in range(repeats):
            fn(*operands)
        seconds += (time.perf_counter() - start) / repeats * count
        gflop += matmul_flops(op, layouts) * count / 1e9
    return gflop, seconds
