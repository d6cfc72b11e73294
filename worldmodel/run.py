"""Run infrastructure: seeding, run directories, metrics logging, progress bars.

A run directory holds::

    config.json       the resolved config, with the package version
    metrics.jsonl     one JSON object per logging step, always with "step"
    events.out.tfevents.*   TensorBoard
    checkpoints/      written with worldmodel.checkpoint
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import random
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from worldmodel.checkpoint import atomic_write_json


def package_version() -> str:
    """The installed version of the ``arrcoc`` distribution (``"unknown"`` if not installed)."""
    try:
        return metadata.version("arrcoc")
    except metadata.PackageNotFoundError:
        return "unknown"


def seed_everything(seed: int) -> None:
    """Seed python's `random`, numpy and torch (CPU and every device) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the OS.

    By default glibc serves every allocation above 32 MB with a fresh ``mmap`` and unmaps it
    on free, so the large tensors of a Dreamer update (the imagined features ``[N, H+1, F]``,
    the latents ``[N, H+1, S, C]``) are page-faulted in anew on every update. Serving them
    from the heap and never trimming it made an ``xs`` update ~7% faster on the project's
    CPU (docs/worldmodel.md, "Speed"). Process-wide, for the rest of the process (its resident
    memory then stays at its high-water mark) and idempotent; the training runner calls it
    unless ``run.keep_memory=false``, and so do the speed benchmarks. Returns False (and
    changes nothing) without glibc.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # no glibc (macOS, Windows, musl)
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def rng_state() -> dict[str, Any]:
    """The python, numpy and torch RNG states, in a form `save_checkpoint` accepts."""
    np_state = np.random.get_state()
    return {
        "python": json.dumps(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore states saved by `rng_state`."""
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    keys = state["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(state["numpy"]["pos"]), 0, 0.0))
    torch.set_rng_state(state["torch"])


def progress(
    iterable: Iterable | None = None, total: int | None = None, desc: str = "", **kwargs: Any
) -> tqdm:
    """The progress bar used by every long loop (tqdm; silent when ARRCOC_NO_PROGRESS=1)."""
    disable = os.environ.get("ARRCOC_NO_PROGRESS", "") == "1"
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, **kwargs)


class RunDir:
    """A run directory: resolved config, metrics.jsonl and TensorBoard events.

    ``run.log(step, {"loss": 0.3})`` appends ``{"step": step, "loss": 0.3}`` to
    metrics.jsonl and writes the scalars to TensorBoard.
    """

    def __init__(self, logdir: str | os.PathLike, config: Mapping[str, Any], tensorboard: bool = True):
        self.path = Path(logdir)
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints = self.path / "checkpoints"
        atomic_write_json(self.path / "config.json", {"version": package_version(), **dict(config)})
        self._metrics = open(self.path / "metrics.jsonl", "a", encoding="utf-8")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.path))

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append one JSON line (with ``step``) and write scalars to TensorBoard."""
        row: dict[str, Any] = {"step": int(step)}
        for key, value in metrics.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().float().mean().item()
            if isinstance(value, (np.floating, np.integer)):
                value = value.item()
            row[key] = value
            if self._writer is not None and isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(key, value, int(step))
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()

    def close(self) -> None:
        self._metrics.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(logdir: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a run's metrics.jsonl (a torn last line from a kill is skipped)."""
    rows = []
    path = Path(logdir) / "metrics.jsonl"
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
