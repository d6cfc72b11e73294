"""Future reuse: a learned coupling scorer, trained on what the next turns actually use.

The occlusion coupling (`arrcoc.future_coupling`) asks how much a word moves the world
model's imagined future; a word can matter to the future without moving a pooled turn
embedding (a booking code, a date). Future reuse learns it from the dialogue itself, as
LLMLingua-2 learns a token classifier and RECOMP an extractive compressor: a word is a
positive when it occurs again in the next ``span`` turns. The classifier reads the word
together with what the world model imagines after the context:

    x_i = [h_i, h_i * g, h_i * q, s_i]        [N, 3H + 8]
    p_i = sigmoid(MLP(LayerNorm(x_i)))         [N]

h_i: the encoder's vector of word i (its pieces' mean, in its turn). g: the next user turn
the world model imagines after the context. q: the last context turn. s_i: cos(h_i, g),
cos(h_i, q), the turn's distance from the end (relative and log), whether it is a user
turn, the highest cosine of h_i with any word of a *later* turn (was it restated or
superseded?), log count of the word in the context, log number of its pieces.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from worldmodel.checkpoint import atomic_write_bytes, atomic_write_json

Messages = Sequence[Mapping[str, str]]
NUM_SCALARS = 8
ROW_BLOCK = 1024
_EDGE = re.compile(r"^[^0-9a-z]+|[^0-9a-z]+$")
# Function words that recur in every turn; reusing them says nothing about relevance.
STOP_WORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers him his how i if in into is it its just me more most my no nor not now of
    off on once only or other our ours out over own same she should so some such than that the their
    theirs them then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yes ok okay please thanks thank
    let like get make use using one""".split()
)


class ReuseError(ValueError):
    """Unusable reuse-head files or training data."""


def bare(word: str) -> str:
    """Lower case, leading/trailing punctuation stripped (``"Time,"`` -> ``"time"``)."""
    return _EDGE.sub("", word.lower())


def is_content(word: str) -> bool:
    """A bare word worth tracking: contains a digit, or has >= 2 characters and is no stop word."""
    return any(c.isdigit() for c in word) or (len(word) >= 2 and word not in STOP_WORDS)


def reuse_labels(
    context_words: Sequence[str], future: Messages, keep: Callable[[str], bool] = is_content
) -> Tensor:
    """[N] 1.0 where the context word (bare) occurs in the future messages and ``keep`` accepts it."""
    used = {bare(w) for m in future for w in m["content"].split()}
    return torch.tensor([float(b in used and keep(b)) for b in map(bare, context_words)])


@dataclass
class ReuseConfig:
    """dim: encoder width H. hidden: MLP width. span: future turns that define a positive."""

    dim: int = 384
    hidden: int = 128
    span: int = 3


class FutureReuse(nn.Module):
    """The reuse classifier: features [N, 3H + 8] -> logits [N]."""

    def __init__(self, config: ReuseConfig) -> None:
        super().__init__()
        self.config = config
        width = 3 * config.dim + NUM_SCALARS
        self.net = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, config.hidden), nn.SiLU(), nn.Linear(config.hidden, 1)
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (atomically) into ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        atomic_write_bytes(path / "model.safetensors", safetensors_bytes(state, {"format": "pt"}))
        atomic_write_json(path / "config.json", asdict(self.config))
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path) -> FutureReuse:
        """Load a head saved by `save_pretrained`; a missing or corrupt file raises `ReuseError`."""
        path = Path(path)
        try:
            config = ReuseConfig(**json.loads((path / "config.json").read_text(encoding="utf-8")))
            state = load_file(str(path / "model.safetensors"))
        except (OSError, ValueError, TypeError, SafetensorError) as err:
            raise ReuseError(f"cannot load a future-reuse head from {path}: {err}") from err
        head = cls(config)
        try:
            head.load_state_dict(state)
        except RuntimeError as err:
            raise ReuseError(f"{path}/model.safetensors does not match its config.json: {err}") from err
        return head.eval()


def reuse_features(scorer: Any, messages: Messages, pooled: tuple[Any, Tensor] | None = None) -> Tensor:
    """[N, 3H + 8] features of every word (see the module docstring).

    scorer: a `arrcoc.knowing.WorldModelScorer`; pooled: its ``pool(messages)`` if already computed.
    """
    pooled, h = pooled if pooled is not None else scorer.pool(messages)
    n, dim = h.shape
    turns = pooled.pooled()
    t_model = pooled.model_turns
    if t_model:
        with torch.no_grad():
            _, futures = scorer._imagine(turns[None, :t_model])
        g, q = futures[0, :dim], turns[t_model - 1]
    else:
        g = q = torch.zeros(dim)
    hn = F.normalize(h, dim=-1)
    restated = torch.zeros(n)
    for b in range(0, n, ROW_BLOCK):  # row blocks keep the [rows, N] cosines small on long dialogues
        later = pooled.word_turn[None, :] > pooled.word_turn[b : b + ROW_BLOCK, None]
        cos = (hn[b : b + ROW_BLOCK] @ hn.T).masked_fill(~later, -1.0)
        restated[b : b + ROW_BLOCK] = cos.max(-1).values.clamp(min=0.0)
    words = [w for m in messages for w in m["content"].split()]
    counts = Counter(bare(w) for w in words)
    last = max(t_model - 1, 0)
    ago = (last - pooled.word_turn).clamp(min=0).float()
    scalars = torch.stack(
        [
            hn @ F.normalize(g, dim=0),
            hn @ F.normalize(q, dim=0),
            ago / max(last, 1),
            torch.log1p(ago),
            ((pooled.word_turn % 2 == 0) & pooled.coupled).float(),
            restated,
            torch.tensor([math.log1p(counts[bare(w)]) for w in words]),
            torch.log1p(pooled.word_count),
        ],
        -1,
    )
    return torch.cat([h, h * g, h * q, scalars], -1)


def dialogue_cuts(
    messages: Messages, span: int = 3, cuts: int = 1, min_words: int = 3, seed: int = 0
) -> list[tuple[list[dict[str, str]], Tensor]]:
    """Training examples of one dialogue: ``(context, labels [N])`` for up to ``cuts`` seeded cuts.

    A cut goes before a user message that has at least ``min_words`` words and two messages
    before it; the labels mark the context words used again in the next ``span`` messages.
    """
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    points = [
        t
        for t in range(2, len(clean))
        if clean[t]["role"] == "user" and len(clean[t]["content"].split()) >= min_words
    ]
    chosen = sorted(random.Random(seed).sample(points, min(cuts, len(points))))
    out = []
    for t in chosen:
        words = [w for m in clean[:t] for w in m["content"].split()]
        out.append((clean[:t], reuse_labels(words, clean[t : t + span])))
    return out


def reuse_dataset(
    scorer: Any, examples: Sequence[tuple[Messages, Tensor]], progress: Callable[[Any], Any] = iter
) -> tuple[Tensor, Tensor]:
    """Features [W, 3H + 8] and labels [W] of all words of ``(context messages, labels [N])`` examples."""
    feats, labels = [], []
    for messages, y in progress(examples):
        x = reuse_features(scorer, messages)
        if len(x) != len(y):
            raise ReuseError(f"{len(y)} labels for {len(x)} words")
        feats.append(x)
        labels.append(y.float())
    if not feats:
        raise ReuseError("no training examples")
    return torch.cat(feats), torch.cat(labels)


def fit_reuse(
    x: Tensor,
    y: Tensor,
    config: ReuseConfig | None = None,
    epochs: int = 8,
    batch_size: int = 512,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[FutureReuse, dict[str, float]]:
    """Fit a `FutureReuse` head on features [W, F] and labels [W] (positives re-weighted to balance).

    Returns the head (eval mode) and statistics (words, positive rate, first and last epoch loss).
    """
    pos = float(y.mean())
    if not 0.0 < pos < 1.0:
        raise ReuseError(f"training labels must contain both classes (positive rate {pos:.3f})")
    config = config or ReuseConfig(dim=(x.shape[1] - NUM_SCALARS) // 3)
    torch.manual_seed(seed)
    head = FutureReuse(config)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    weight = torch.tensor((1 - pos) / pos)
    order = list(range(len(x)))
    rng = random.Random(seed)
    losses = []
    for _ in range(epochs):
        rng.shuffle(order)
        total = 0.0
        for b in range(0, len(order), batch_size):
            idx = torch.tensor(order[b : b + batch_size])
            loss = F.binary_cross_entropy_with_logits(head(x[idx]), y[idx], pos_weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    stats = {"words": len(x), "positive_rate": pos}
    return head.eval(), {**stats, "loss_first_epoch": losses[0], "loss_last_epoch": losses[-1]}


def train_reuse(
    scorer: Any,
    examples: Sequence[tuple[Messages, Tensor]],
    config: ReuseConfig | None = None,
    seed: int = 0,
    progress: Callable[[Any], Any] = iter,
    **fit: Any,
) -> tuple[FutureReuse, dict[str, float]]:
    """`reuse_dataset` then `fit_reuse` (``fit``: epochs, batch_size, lr); stats include ``examples``."""
    x, y = reuse_dataset(scorer, examples, progress)
    head, stats = fit_reuse(x, y, config, seed=seed, **fit)
    return head, {"examples": len(examples), **stats}


def reuse_scores(
    head: FutureReuse, scorer: Any, messages: Messages, pooled: tuple[Any, Tensor] | None = None
) -> Tensor:
    """[N] probability that each word is used again in the next ``head.config.span`` turns."""
    with torch.no_grad():
        return torch.sigmoid(head(reuse_features(scorer, messages, pooled)))
