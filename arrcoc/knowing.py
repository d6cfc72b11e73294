"""Knowing: the three ways of knowing, as per-word scores of a dialogue.

* coupling (participatory): how much a word matters to the *imagined future*: the
  change in the DialogueWorldModel's simulated next turns and predicted value when the
  word is removed. Exact form: batched occlusion; fast form: gradient x input with
  respect to soft token weights (one encoder forward and backward); reuse form: a
  learned head's probability that the word is used again in the next turns, read from
  the word and the imagined future (`arrcoc.future_reuse`); hybrid form: the reuse and the
  fast coupling, each min-max normalised, mixed with weight `HYBRID_FAST_WEIGHT` on the fast one.
* information (propositional): surprisal of the word under the model's text decoder.
* salience (perspectival): query-independent salience from the encoder.

Scores are computed on subword pieces and aggregated to whitespace words (the unit
arrcoc keeps and reports). `score_words` is the simple function API.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from arrcoc.balancing import SCORERS, normalize_per_sample
from arrcoc.future_coupling import (
    PooledTurns,
    coupling_exact,
    coupling_fast,
    pool_pieces,
    projection,
    salience,
)
from arrcoc.future_reuse import FutureReuse, reuse_scores
from arrcoc.words import split_words

METHODS: tuple[str, ...] = ("fast", "exact", "reuse", "hybrid")
REUSE_DIR = "reuse"  # a model directory's optional future-reuse head
# Weight of the fast coupling in ``hybrid``, chosen with hybrid's tensions (`arrcoc.compress.
# METHOD_TENSIONS`) on the relevance benchmark's dev split, never its test split: the setting whose
# smaller margin over the best baseline on J4-dev recall and J2c retention is largest
# (`python -m benches.relevance.dev_tuning`, benches/results/relevance_dev_hybrid.json).
HYBRID_FAST_WEIGHT = 0.75


class ScoringError(ValueError):
    """An unknown scoring method or an unusable relevance model."""


@dataclass
class WordScores:
    """Per-word scores of one dialogue: ``scores[name]`` is [N] (higher = more relevant).

    embeddings: optional [N, D] word embeddings (for the semantic diversity term).
    reserved: optional [N] score whose ranking a balancer with a reserved share serves first
        (``hybrid``: the future-reuse head's, `arrcoc.balancing.reserved_ranking`).
    """

    scores: dict[str, torch.Tensor]
    embeddings: torch.Tensor | None = None
    reserved: torch.Tensor | None = None


@runtime_checkable
class RelevanceModel(Protocol):
    """Anything that scores the words of a dialogue with the three scorers."""

    def score(self, messages: Sequence[Mapping[str, str]], method: str = "fast") -> WordScores:
        """Scores for every whitespace word of ``messages``, keys = `SCORERS`."""
        ...


def model_turns(messages: Sequence[Mapping[str, str]]) -> tuple[list[int], int]:
    """The world-model turn of every message, mirroring `dialogue.steps.exchanges`.

    Turn ``2k`` is the k-th user turn, ``2k + 1`` the assistant's reply to it. System and
    tool messages, empty messages and assistant messages before the first user message are
    not read by the world model; each gets its own turn index ``>= num_model_turns`` (they
    are still encoded, for salience). Consecutive messages of one role share a turn.
    Returns ``(turn of each message, num_model_turns)``.
    """
    turns: list[int | None] = []
    last_role, current = None, -1
    for message in messages:
        role = message["role"]
        readable = role in ("user", "assistant") and message["content"].strip()
        if not readable or (role == "assistant" and current < 0):
            turns.append(None)
            continue
        if role != last_role:
            current += 1
            last_role = role
        turns.append(current)
    num = current + 1
    extra = iter(range(num, num + turns.count(None)))
    return [t if t is not None else next(extra) for t in turns], num


@contextmanager
def mean_field(rssm: torch.nn.Module) -> Iterator[None]:
    """Use the expected stochastic state (class probabilities) instead of one-hot samples.

    Deterministic and smooth, so the occlusion effects of single words are not drowned by
    sampling noise and the fast (gradient) form has a gradient through the stochastic path.
    """
    rssm.sample = lambda logits: logits.softmax(-1)  # the instance attribute shadows RSSM.sample
    try:
        yield
    finally:
        del rssm.sample


class WorldModelScorer:
    """The three scorers on a `DialogueWorldModel` (see the module docstring).

    num_turns: imagined future exchanges. proj_dim: size K of the random projection of the
    imagined future turn embeddings. batch_size: occluded variants per world-model call
    (exact form). reuse: a trained `FutureReuse` head (needed by the ``reuse`` and ``hybrid``
    forms). hybrid_fast_weight: the fast coupling's weight in the ``hybrid`` form.
    """

    def __init__(
        self,
        world_model: Any,
        num_turns: int = 3,
        proj_dim: int = 8,
        batch_size: int = 64,
        reuse: FutureReuse | None = None,
        hybrid_fast_weight: float = HYBRID_FAST_WEIGHT,
    ) -> None:
        if not 0.0 <= hybrid_fast_weight <= 1.0:
            raise ScoringError(f"hybrid_fast_weight must be in [0, 1], got {hybrid_fast_weight}")
        self.model = world_model.eval()
        self.num_turns, self.batch_size, self.reuse = num_turns, batch_size, reuse
        self.hybrid_fast_weight = hybrid_fast_weight
        enc = world_model.encoder
        self.proj = projection(num_turns * enc.dim, proj_dim)

    def _imagine(self, turns: Tensor) -> tuple[Tensor, Tensor]:
        """Turn embeddings [B, T, H] (user, reply, user, ...) -> (discounted value [B], futures [B, M])."""
        users, replies = turns[:, 0::2], turns[:, 1::2]
        has_reply = replies.shape[1] == users.shape[1]
        if not has_reply:
            replies = torch.cat([replies, torch.zeros_like(users[:, :1])], 1)
        flag = torch.full((len(turns),), has_reply, dtype=torch.bool)
        with mean_field(self.model.rssm):
            state = self.model.latent_from_embeddings(users, replies, flag)
            traj = self.model.simulate_future_turns(state, None, self.num_turns, seed=0)
        return traj.discounted_total, traj.next_user.flatten(1)

    def pool(self, messages: Sequence[Mapping[str, str]]) -> tuple[PooledTurns, Tensor]:
        """One chunked encoder pass over the dialogue (see `pool_pieces`)."""
        enc = self.model.encoder
        turn_of, num = model_turns(messages)

        def hidden(ids: Tensor, mask: Tensor) -> Tensor:
            return enc.encode_tokens(ids, mask)[1]

        words = [m["content"].split() for m in messages]
        return pool_pieces(
            hidden, enc.tokenizer, words, turn_of, num, enc.max_length, normalize=enc.normalize
        )

    def information(self, messages: Sequence[Mapping[str, str]], pooled: PooledTurns | None = None) -> Tensor:
        """[N] surprisal (nats) of each word under the decoder, given the latent before its turn.

        Pieces past the decoder's length limit are not scored by the model; those words get
        their turn's mean surprisal per piece times their piece count (no information
        either way). Words the model does not read get 0. ``pooled`` (from `pool`) saves
        a second encoder pass over the turns.
        """
        turn_of, num = model_turns(messages)
        words = split_words(messages)
        out = torch.zeros(len(words))
        readable = [i for i, t in enumerate(turn_of) if t < num]
        if not readable:
            return out
        owners = _turn_word_owners(messages, turn_of, num)
        with mean_field(self.model.rssm), torch.no_grad():
            embedded = None if pooled is None else pooled.pooled()[:num]
            turns = self.model.turn_surprisal([messages[i] for i in readable], turn_embeddings=embedded)
        for turn, scored in enumerate(turns):
            owner = owners[turn]
            counts: dict[int, int] = {}
            total = 0.0
            for (start, _), value in zip(scored.offsets, scored.surprisal.tolist(), strict=True):
                word = owner[min(start, len(owner) - 1)]
                if word is not None:
                    out[word] += value
                    counts[word] = counts.get(word, 0) + 1
                    total += value
            if scored.truncated and counts:
                per_piece = total / sum(counts.values())
                enc = self.model.tokenizer
                for word in {w for w in owner if w is not None} - set(counts):
                    out[word] = per_piece * max(1, len(enc.encode(words[word].text).ids) - 1)
        return out

    def score(self, messages: Sequence[Mapping[str, str]], method: str = "fast") -> WordScores:
        """Coupling (``fast``, ``exact``, ``reuse`` or ``hybrid``), information and salience per word [N]."""
        if method not in METHODS:
            raise ScoringError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
        if method in ("reuse", "hybrid") and self.reuse is None:
            raise ScoringError(
                f"method {method!r} needs a future-reuse head: train one with `arrcoc train-reuse DATA "
                f"--model DIR` (it is saved in DIR/{REUSE_DIR}) or pass WorldModelScorer(reuse=...)"
            )
        pooled, vectors = self.pool(messages)
        reserved = None
        if pooled.model_turns == 0:
            coupling = torch.zeros(len(vectors))
        elif method in ("reuse", "hybrid"):
            coupling = reuse_scores(self.reuse, self, messages, (pooled, vectors))
            if method == "hybrid":
                fast = coupling_fast(pooled, self._imagine, self.proj)
                reserved, coupling = coupling, hybrid_coupling(coupling, fast, self.hybrid_fast_weight)
        elif method == "fast":
            coupling = coupling_fast(pooled, self._imagine, self.proj)
        else:
            coupling = coupling_exact(pooled, self._imagine, self.proj, self.batch_size)
        scores = {
            "coupling": coupling,
            "information": self.information(messages, pooled),
            "salience": salience(pooled, vectors),
        }
        return WordScores(scores, reserved=reserved)


def hybrid_coupling(reuse: Tensor, fast: Tensor, fast_weight: float = HYBRID_FAST_WEIGHT) -> Tensor:
    """The ``hybrid`` coupling [N]: ``(1 - w) unit(reuse) + w unit(fast)``, each min-max normalised over
    the dialogue's words (all equal -> 0.5)."""

    def unit(x: Tensor) -> Tensor:
        return normalize_per_sample(x[None].float(), torch.ones(1, len(x), dtype=torch.bool))[0]

    return (1 - fast_weight) * unit(reuse) + fast_weight * unit(fast)


def _turn_word_owners(
    messages: Sequence[Mapping[str, str]], turn_of: Sequence[int], num: int
) -> list[list[int | None]]:
    """Per model turn (messages joined by a blank line, as the model does): for each character
    position, the first word at or after it, so a whitespace piece belongs to the word it precedes."""
    texts: list[list[tuple[str, int]]] = [[] for _ in range(num)]  # (content, first word index)
    word = 0
    for message, turn in zip(messages, turn_of, strict=True):
        if turn < num:
            texts[turn].append((message["content"], word))
        word += len(message["content"].split())
    owners = []
    for parts in texts:
        owner: list[int | None] = []
        for k, (content, first) in enumerate(parts):
            chars: list[int | None] = [None] * (len(content) + (2 if k else 0))
            base = 2 if k else 0
            for j, match in enumerate(re.finditer(r"\S+", content)):
                chars[base + match.start() : base + match.end()] = [first + j] * (match.end() - match.start())
            owner += chars
        nxt: int | None = None
        for c in range(len(owner) - 1, -1, -1):
            nxt = owner[c] if owner[c] is not None else nxt
            owner[c] = nxt
        owners.append(owner + [None])
    return owners


@lru_cache(maxsize=2)
def _load_scorer(path: str | None) -> WorldModelScorer:
    """Load a model directory once per process (None = the shipped default)."""
    from dialogue.model import DialogueWorldModel
    from dialogue.pretrained import DEFAULT_DIR

    model = DialogueWorldModel.from_pretrained(path)
    head = Path(path or DEFAULT_DIR) / REUSE_DIR
    return WorldModelScorer(model, reuse=FutureReuse.from_pretrained(head) if head.is_dir() else None)


def resolve_model(model: Any = None) -> RelevanceModel:
    """A `RelevanceModel` from None (the shipped default), a model directory, a model, or a scorer.

    Directories (and the default) are loaded once per process and cached.
    """
    if isinstance(model, RelevanceModel):
        return model
    from dialogue.model import DialogueWorldModel

    if model is None or isinstance(model, (str, Path)):
        return _load_scorer(None if model is None else str(Path(model).resolve()))
    if isinstance(model, DialogueWorldModel):
        return WorldModelScorer(model)
    raise ScoringError(
        f"model must be None, a directory, a DialogueWorldModel or a scorer, got {type(model).__name__}"
    )


def score_words(
    messages: Sequence[Mapping[str, str]], method: str = "fast", model: Any = None
) -> torch.Tensor:
    """Per-word relevance [N] of a dialogue by ``method``.

    method: ``fast`` / ``exact`` (balanced relevance with the fast or exact future
    coupling), or one scorer: ``coupling_fast``, ``coupling_exact``, ``information``,
    ``salience``. Words are ``content.split()`` of each message, in order.
    """
    from arrcoc.compress import score

    if method in METHODS:
        return torch.tensor(score(messages, model, method=method).balanced)
    scorer, _, form = method.partition("_")
    if scorer not in SCORERS or (form and (scorer != "coupling" or form not in METHODS)):
        names = ", ".join([*METHODS, "coupling_fast", "coupling_exact", "information", "salience"])
        raise ScoringError(f"unknown method {method!r}; expected one of {names}")
    return resolve_model(model).score(messages, form or "fast").scores[scorer]


def relevance_via_world_model(
    context: Sequence[Mapping[str, str]],
    tokens: Sequence[int] | Sequence[str] | None = None,
    world_model: Any = None,
    method: str = "exact",
) -> Tensor:
    """Per-token relevance from simulated futures (the future-coupling score).

    context: the dialogue. tokens: None (every word, [N]), word indices into the context's
    words, or strings (each scored by its highest-scoring occurrence, punctuation-insensitive;
    0 if it does not occur). world_model: as for `resolve_model`. Returns [len(tokens)].
    """
    from arrcoc.words import validate_messages

    messages = validate_messages(context)
    coupling = resolve_model(world_model).score(messages, method).scores["coupling"]
    if tokens is None:
        return coupling
    tokens = list(tokens)
    if all(isinstance(t, int) for t in tokens):
        if any(not 0 <= t < len(coupling) for t in tokens):
            raise ScoringError(f"token indices must be in [0, {len(coupling)})")
        return coupling[torch.tensor(tokens, dtype=torch.long)]
    if not all(isinstance(t, str) for t in tokens):
        raise ScoringError("tokens must be all word indices or all strings")
    bare = [w.text.strip(_PUNCT).lower() for w in split_words(messages)]
    out = torch.zeros(len(tokens))
    for k, token in enumerate(tokens):
        hits = [i for i, w in enumerate(bare) if w == token.strip(_PUNCT).lower()]
        if hits:
            out[k] = coupling[torch.tensor(hits)].max()
    return out


_PUNCT = ".,;:!?\"'()[]{}<>"
