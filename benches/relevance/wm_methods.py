"""The world-model methods under test: arrcoc's balanced relevance with fast, exact or reuse coupling.

Thin adapters from a benchmark `Instance` to `arrcoc.knowing.score_words`; the world
model and the scorers themselves live in `dialogue` and `arrcoc`. ``wm_reuse``'s head is
trained here, like the scorer LM: on half A (one seeded cut per conversation) and the J4
train pool, never on test conversations or test templates.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np
import torch

from benches.relevance.cache import cached_json
from benches.relevance.data import (
    TARGET_SPAN,
    Instance,
    load_sharegpt,
    make_instances,
    split_conversations,
)
from benches.relevance.scorers import is_content
from worldmodel.checkpoint import atomic_write_json
from worldmodel.run import progress

HEAD_METHODS = ("reuse", "hybrid")  # methods that read a FutureReuse head (one per seed, shared)
REUSE_TRAIN = 400  # half-A cuts the reuse head is trained on (plus the whole J4 train pool)

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
        self.relevance: Any = model  # what `score_words` scores with
        self.fingerprint = fingerprint  # ties cached results to these weights (None: not checked)
        self.limit = limit  # evaluate on the first `limit` instances of each track (None: all)
        self.tracks = tracks  # ShareGPT tracks to run on (J4 always runs)

    def score(self, inst: Instance) -> np.ndarray:
        from arrcoc.knowing import score_words

        messages = [{"role": t.role, "content": t.text} for t in inst.context]
        scores = score_words(messages, self.method, self.relevance).detach().cpu().numpy().astype(np.float64)
        if scores.shape != (inst.n_words,):
            raise ValueError(f"{self.name} returned {scores.shape} scores for {inst.n_words} words")
        return np.nan_to_num(scores)


def shares_tag(method: str) -> str:
    """``-r<s>`` / ``-recent<r>`` for the reserved and recent budget shares of the method's balancer, so
    cached results are never reused across shares; "" for a share of 0 (earlier results stay valid)."""
    from arrcoc.compress import balancer_for

    b = balancer_for(method)
    return (f"-r{b.reserved_share}" if b.reserved_share else "") + (
        f"-recent{b.recent_share}" if b.recent_share else ""
    )


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
    from arrcoc.knowing import METHODS

    tag = model_fingerprint(model)
    every = ("primary", "long")  # wm_reuse costs one encoder pass per dialogue: always every track
    out = []
    for m in methods:
        base, sep, seed = m.partition("_seed")
        if base not in METHODS or (sep and (base not in HEAD_METHODS or not seed.isdigit())):
            raise ValueError(
                f"unknown world-model method {m!r}: one of {', '.join(METHODS)}, "
                "or reuse_seed<k> / hybrid_seed<k>"
            )
        if base in HEAD_METHODS:
            out.append(ReuseMethod(model, m, limit, every if base == "reuse" else tracks, tag))
        else:
            out.append(WorldModelMethod(model, m, limit, tracks, tag + shares_tag(m)))
    return out


def _keep(word: str) -> bool:
    """Label words as the oracle and J5 count them: content words, plus any word with a digit."""
    return is_content(word) or any(c.isdigit() for c in word)


def _examples(instances: list[Instance]) -> list[tuple[list[dict[str, str]], torch.Tensor]]:
    from arrcoc.future_reuse import reuse_labels

    out = []
    for inst in instances:
        messages = [{"role": t.role, "content": t.text} for t in inst.context]
        future = [{"role": t.role, "content": t.text} for t in inst.targets[:TARGET_SPAN]]
        out.append((messages, reuse_labels(inst.flat_words(), future, _keep)))
    return out


def _half_a_cuts(bench: Any) -> list[Instance]:
    """One seeded cut per half-A conversation (the test instances' recipe), cached as JSON."""
    from benches.relevance.runner import _instance_from_json, _instance_to_json

    def build() -> list[dict]:
        convs = split_conversations(load_sharegpt(bench.s.max_records))["train_a"][: bench.s.lm_train_convs]
        return [_instance_to_json(i) for i in make_instances(convs, bench.s.seed, bench.encoder.count_pieces)]

    return [_instance_from_json(d) for d in cached_json(bench.dir / "half_a_cuts.json", build)]


_DATASETS: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}  # features shared by the seeds


class ReuseMethod(WorldModelMethod):
    """``wm_reuse`` / ``wm_hybrid`` (head seed 0) and ``..._seed<k>``: balanced relevance whose coupling
    is a `FutureReuse` head fitted by `fit` (hybrid: mixed with the fast coupling). The seed changes
    the head's initialisation and batches; both methods share the head of a seed."""

    def __init__(self, model: Any, method: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(model, method, *args, **kwargs)
        base, _, seed = method.partition("_seed")
        self.method, self.seed = base, int(seed or 0)

    def fit(self, bench: Any) -> None:
        """Load the head cached for this world model, or train it (half A + J4 train pool) and cache it."""
        from arrcoc.compress import balancer_for
        from arrcoc.future_reuse import FutureReuse, ReuseError, fit_reuse, reuse_dataset
        from arrcoc.knowing import WorldModelScorer

        suffix = f"-seed{self.seed}" if self.seed else ""
        path = bench.dir / f"reuse_head-{self.fingerprint}-{REUSE_TRAIN}{suffix}"
        scorer = WorldModelScorer(self.model)
        try:
            head = FutureReuse.from_pretrained(path)
        except ReuseError:
            log.info("training the future-reuse head (cached at %s)", path)
            key = f"{bench.dir}-{self.fingerprint}"
            if key not in _DATASETS:
                train = _examples(_half_a_cuts(bench)[:REUSE_TRAIN] + list(bench.j4_train))
                _DATASETS[key] = (*reuse_dataset(scorer, train, progress), len(train))
            x, y, n = _DATASETS[key]
            head, stats = fit_reuse(x, y, seed=bench.s.seed + self.seed)
            head.save_pretrained(path)
            atomic_write_json(path / "train_stats.json", {"examples": n, "seed": self.seed, **stats})
        scorer.reuse = head
        self.relevance = scorer
        mix = ""  # a new mixing weight or tuned tensions: re-run
        if self.method == "hybrid":
            b = balancer_for(self.method)
            t = b.tensions
            dials = f"{t.compress_particularize}-{t.exploit_explore}-{t.focus_diversify}"
            mix = f"-w{scorer.hybrid_fast_weight}-t{dials}" + ("-peaks" if b.keep_peaks else "")
        self.fingerprint = f"{self.fingerprint}-{model_fingerprint(head)}{mix}{shares_tag(self.method)}"
