"""Sequence replay on memory-mapped files, with uniform + recency sampling.

Each env stream (``worker``) owns a ring of ``capacity // workers`` steps, so the
sequences sampled from it are contiguous in time (they may cross episode boundaries;
``is_first`` marks them and the RSSM resets there). Every key of a step is stored in
its own ``numpy.memmap`` file ``<directory>/<key>.npy`` of shape
``[workers, capacity // workers, *shape]``: a 1M-step buffer lives on disk, not in RAM.

Sampling mixes a uniform choice of start over all valid sequences with a recency
choice (``recent_frac`` of the batch) whose start age ``a`` has density proportional
to ``1 / (1 + a)``. The numpy Generator is owned by the replay and saved with it, so a
resumed run continues with identical contents and identical samples.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel.checkpoint import atomic_write_json

META = "replay.json"


class ReplayError(ValueError):
    """Bad input to the replay, or a replay directory that cannot be used."""


class Replay:
    """Sequence replay buffer backed by memory-mapped files.

    Args:
        directory: where the ``.npy`` memmaps and ``replay.json`` live (created).
        capacity: total steps over all workers (each worker keeps ``capacity // workers``).
        workers: number of parallel env streams.
        recent_frac: fraction of each batch drawn with recency sampling (rest uniform).
        seed: seed of the owned ``numpy.random.Generator``.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        capacity: int = 1_000_000,
        workers: int = 1,
        recent_frac: float = 0.5,
        seed: int = 0,
    ) -> None:
        if capacity < workers or workers < 1:
            raise ReplayError(f"replay needs capacity >= workers >= 1, got {capacity}, {workers}")
        if not 0.0 <= recent_frac <= 1.0:
            raise ReplayError(f"recent_frac must be in [0, 1], got {recent_frac}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.capacity, self.workers, self.recent_frac = capacity, workers, recent_frac
        self.ring = capacity // workers
        self.rng = np.random.default_rng(seed)
        self.spec: dict[str, tuple[tuple[int, ...], str]] = {}
        self.arrays: dict[str, np.memmap] = {}
        self.count = np.zeros(workers, dtype=np.int64)  # steps ever written per worker

    # ------------------------------------------------------------------ writing
    def _create(self, step: Mapping[str, np.ndarray], mode: str = "w+") -> None:
        for key, value in step.items():
            value = np.asarray(value)
            self.spec[key] = (tuple(value.shape), value.dtype.str)
        self._open(mode)

    def _open(self, mode: str) -> None:
        for key, (shape, dtype) in self.spec.items():
            self.arrays[key] = np.lib.format.open_memmap(
                self.directory / f"{key}.npy", mode=mode, dtype=np.dtype(dtype),
                shape=(self.workers, self.ring, *shape),
            )

    def add(self, step: Mapping[str, np.ndarray], worker: int = 0) -> None:
        """Append one step (a dict of arrays without batch dimension) to ``worker``'s stream.

        The keys, shapes and dtypes are fixed by the first call; later steps must match.
        """
        if not 0 <= worker < self.workers:
            raise ReplayError(f"worker {worker} out of range: the replay has {self.workers} workers")
        if not self.spec:
            self._create(step)
        if set(step) != set(self.spec):
            raise ReplayError(f"step keys {sorted(step)} differ from the replay's {sorted(self.spec)}")
        index = int(self.count[worker] % self.ring)
        for key, value in step.items():
            value = np.asarray(value)
            shape, dtype = self.spec[key]
            if value.shape != shape:
                raise ReplayError(f"replay key '{key}': expected shape {shape}, got {value.shape}")
            if not np.can_cast(value.dtype, np.dtype(dtype), casting="same_kind"):
                raise ReplayError(f"replay key '{key}': expected dtype {np.dtype(dtype)}, got {value.dtype}")
            self.arrays[key][worker, index] = value
        self.count[worker] += 1

    def __len__(self) -> int:
        """Number of steps currently stored (over all workers)."""
        return int(np.minimum(self.count, self.ring).sum())

    # ------------------------------------------------------------------ sampling
    def sample(self, batch: int, length: int) -> dict[str, torch.Tensor]:
        """``batch`` sequences of ``length`` consecutive steps: a dict of ``[B, T, ...]`` tensors."""
        stored = np.minimum(self.count, self.ring)
        starts = np.maximum(stored - length + 1, 0)  # valid start positions per worker
        if length > self.ring or starts.sum() == 0:
            raise ReplayError(
                f"cannot sample sequences of length {length}: the longest stream holds {stored.max()} steps"
            )
        worker = self.rng.choice(self.workers, size=batch, p=starts / starts.sum())
        n = starts[worker]
        uniform = self.rng.integers(0, n)
        age = np.floor((n + 1.0) ** self.rng.random(batch) - 1.0).astype(np.int64)
        recent = np.minimum(age, n - 1)
        use_recent = self.rng.random(batch) < self.recent_frac
        logical = np.where(use_recent, n - 1 - recent, uniform)  # 0 = oldest start
        oldest = np.where(self.count[worker] > self.ring, self.count[worker] % self.ring, 0)
        index = (oldest[:, None] + logical[:, None] + np.arange(length)[None]) % self.ring
        rows = worker[:, None]
        return {k: torch.from_numpy(np.ascontiguousarray(a[rows, index])) for k, a in self.arrays.items()}

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """Everything but the arrays: sizes, spec, counts and the RNG state (JSON-able)."""
        return {
            "capacity": self.capacity, "workers": self.workers, "recent_frac": self.recent_frac,
            "spec": {k: [list(s), d] for k, (s, d) in self.spec.items()},
            "count": self.count.tolist(), "rng": self.rng.bit_generator.state,
        }

    def save(self, directory: str | os.PathLike | None = None) -> Path:
        """Flush the memmaps and write ``replay.json``; copy the arrays if ``directory`` is new."""
        target = Path(directory) if directory is not None else self.directory
        target.mkdir(parents=True, exist_ok=True)
        for key, array in self.arrays.items():
            array.flush()
            if target.resolve() != self.directory.resolve():
                shutil.copyfile(self.directory / f"{key}.npy", target / f"{key}.npy")
        atomic_write_json(target / META, self.state())
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Replay:
        """Reopen a replay written by `save` (arrays, counts and RNG state)."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / META).read_text())
            replay = cls(directory, meta["capacity"], meta["workers"], meta["recent_frac"])
            replay.spec = {k: (tuple(s), d) for k, (s, d) in meta["spec"].items()}
            replay.count = np.asarray(meta["count"], dtype=np.int64)
            replay.rng.bit_generator.state = meta["rng"]
            replay._open("r+")
        except (OSError, KeyError, ValueError, TypeError) as err:
            raise ReplayError(f"cannot load replay from {directory}: {err}") from None
        return replay
