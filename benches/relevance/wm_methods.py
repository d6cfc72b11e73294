"""The world-model methods under test: arrcoc's balanced relevance with fast or exact future coupling.

Thin adapters from a benchmark `Instance` to `arrcoc.knowing.score_words`; the world
model and the scorers themselves live in `dialogue` and `arrcoc`.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np
import torch

from benches.relevance.data import Instance

log = logging.getLogger("benches.relevance")


class WorldModelMethod:
    """``wm_fast`` / ``wm_exact``: per-word balanced relevance from a DialogueWorldModel."""

    def __init__(
        self,
        model: Any,
        method: str,
        limit: int | None = None,
        tracks: tuple[str, ...] = ("primary", "long"),
        fingerprint: str | None = None,
    ) -> None:
        self.model, self.method, self.name = model, method, f"wm_{method}"
        self.fingerprint = fingerprint  # ties cached results to these weights (None: not checked)
        self.limit = limit  # evaluate on the first `limit` instances of each track (None: all)
        self.tracks = tracks  # ShareGPT tracks to run on (J4 always runs)

    def score(self, inst: Instance) -> np.ndarray:
        from arrcoc.knowing import score_words

        messages = [{"role": t.role, "content": t.text} for t in inst.context]
        scores = score_words(messages, self.method, self.model).detach().cpu().numpy().astype(np.float64)
        if scores.shape != (inst.n_words,):
            raise ValueError(f"{self.name} returned {scores.shape} scores for {inst.n_words} words")
        return np.nan_to_num(scores)


def model_fingerprint(model: Any) -> str:
    """Hex digest of a torch module's state dict (names, shapes, dtypes, bytes)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().reshape(-1).contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def world_model_scorers(
    model_dir: str | None,
    methods: tuple[str, ...] = ("fast", "exact"),
    limit: int | None = None,
    tracks: tuple[str, ...] = ("primary", "long"),
) -> list:
    """Scorers for the world-model methods, or [] (with a warning) when no model can be loaded."""
    try:
        from dialogue.model import DialogueWorldModel

        model = DialogueWorldModel.from_pretrained(model_dir)
    except (ImportError, AttributeError, ValueError, OSError) as err:
        log.warning("world-model methods skipped: no DialogueWorldModel could be loaded (%s)", err)
        return []
    tag = model_fingerprint(model)
    return [WorldModelMethod(model, m, limit, tracks, tag) for m in methods]
