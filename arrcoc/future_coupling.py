"""Future coupling (participatory knowing): how much each word changes the imagined future.

A word is occluded by setting its pieces' weights to zero inside the encoder's masked
mean pooling (the soft occlusion the turn encoder exposes). The turn embeddings then go
through the world model, which imagines the next turns; the word's coupling is

    coupling_i = |V - V_{-i}| + ||P (g - g_{-i})||

with V the predicted discounted value of the imagined future, g the imagined future turn
embeddings (flattened) and P a fixed random projection to ``K`` dims (scaled so norms are
preserved in expectation, Johnson-Lindenstrauss).

* exact form: recompute V and g for every occluded word (batched over words).
* fast form (gradient x input): the first-order change for ``w_i: 1 -> 0``, from the
  closed-form derivative of the pooled embedding and the Jacobian of the (small) world
  model with respect to the turn embeddings. Neither form backpropagates through the
  encoder: its hidden states do not depend on the pooling weights, so one encoder
  forward pass serves both (and the salience scorer).

Shapes: ``N`` words, ``T`` world-model turns, ``H`` encoder width, ``B`` occlusion batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

#: (turn embeddings [B, T, H]) -> (value [B], imagined future [B, M]); differentiable.
ImagineFn = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass
class PooledTurns:
    """One encoder pass over a dialogue, reduced to what occlusion needs.

    turn_sum [T, H] / turn_count [T]: sums and counts of piece vectors per turn (special
    tokens included, as the encoder's pooling does). word_sum [N, H] / word_count [N]:
    the same per word. word_turn [N]: the turn of each word. Turns ``>= model_turns`` are
    messages the world model does not read (e.g. system prompts): pooled for salience only.
    normalize: whether pooled turn embeddings are L2-normalised.
    """

    turn_sum: Tensor
    turn_count: Tensor
    word_sum: Tensor
    word_count: Tensor
    word_turn: Tensor
    normalize: bool
    model_turns: int

    @property
    def coupled(self) -> Tensor:
        """[N] bool: words in turns the world model reads."""
        return self.word_turn < self.model_turns

    def pooled(self) -> Tensor:
        """[T, H] turn embeddings with nothing occluded."""
        p = self.turn_sum / self.turn_count[:, None].clamp(min=1e-9)
        return F.normalize(p, dim=-1) if self.normalize else p

    def occluded(self, words: Tensor) -> Tensor:
        """[B, H] embedding of the turn of each word in ``words`` [B] with that word removed."""
        t = self.word_turn[words]
        p = (self.turn_sum[t] - self.word_sum[words]) / (self.turn_count[t] - self.word_count[words])[
            :, None
        ].clamp(min=1e-9)
        return F.normalize(p, dim=-1) if self.normalize else p

    def removal_direction(self) -> Tensor:
        """[N, H] first-order change of each word's turn embedding when its weight goes 1 -> 0."""
        t = self.word_turn
        n = self.turn_count[t][:, None].clamp(min=1e-9)
        raw = self.turn_sum[t] / n
        d_raw = -(self.word_sum - self.word_count[:, None] * raw) / n  # d raw / d w_i, times -1
        if not self.normalize:
            return d_raw
        norm = raw.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        q = raw / norm
        return (d_raw - q * (q * d_raw).sum(-1, keepdim=True)) / norm


def _chunks(tokenizer, words: Sequence[str], max_length: int) -> list[tuple[list[int], list[int]]]:
    """``[CLS] pieces [SEP]`` chunks (at most ``max_length``, split at word boundaries), word per piece."""
    ids: list[int] = []
    owner: list[int] = []
    if words:
        enc = tokenizer(list(words), is_split_into_words=True, add_special_tokens=False)
        ids, owner = enc["input_ids"], list(enc.word_ids())
    out, start, room = [], 0, max_length - 2
    while True:
        end = min(start + room, len(ids))
        if end < len(ids) and owner[end] == owner[end - 1]:  # back off to a word boundary if there is one
            end = next((j for j in range(end - 1, start, -1) if owner[j] != owner[j - 1]), end)
        out.append(
            ([tokenizer.cls_token_id, *ids[start:end], tokenizer.sep_token_id], [-1, *owner[start:end], -1])
        )
        start = end
        if start >= len(ids):
            return out


def pool_pieces(
    encoder: Callable[[Tensor, Tensor], Tensor],
    tokenizer,
    words: Sequence[Sequence[str]],
    turn_of_message: Sequence[int],
    model_turns: int,
    max_length: int = 128,
    batch_size: int = 32,
    normalize: bool = True,
) -> tuple[PooledTurns, Tensor]:
    """Encode a dialogue once, chunked, and pool piece vectors per turn and per word.

    words: the words of each message. turn_of_message: the turn each message belongs to
    (messages of one turn are concatenated); turns ``>= model_turns`` are not read by the
    world model. A turn longer than ``max_length`` pieces is split into chunks; its pooled
    embedding is the mean over all its pieces, which equals the encoder's own pooling when
    it fits in one chunk. ``encoder(input_ids [C, L], attention_mask [C, L]) -> hidden [C, L, H]``.
    Returns the pooling and the per-word mean piece vectors [N, H].
    """
    starts = [0]
    for message in words:
        starts.append(starts[-1] + len(message))
    num_words, num_turns = starts[-1], max(turn_of_message) + 1
    chunks: list[tuple[int, list[int], list[int]]] = []
    for turn in range(num_turns):
        members = [m for m, t in enumerate(turn_of_message) if t == turn]
        turn_words = [w for m in members for w in words[m]]
        parts = _chunks(tokenizer, turn_words, max_length)
        # map positions in the concatenated turn back to global word indices
        index = [starts[m] + k for m in members for k in range(len(words[m]))]
        chunks += [(turn, ids, [index[o] if o >= 0 else -1 for o in own]) for ids, own in parts]
    turn_sum = turn_count = word_sum = None
    word_count = torch.zeros(num_words)
    word_turn = torch.tensor([t for t, message in zip(turn_of_message, words, strict=True) for _ in message])
    for b in range(0, len(chunks), batch_size):
        part = chunks[b : b + batch_size]
        length = max(len(ids) for _, ids, _ in part)
        input_ids = torch.full((len(part), length), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(part), length, dtype=torch.long)
        for row, (_, ids, _) in enumerate(part):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        with torch.no_grad():
            hidden = encoder(input_ids, mask).float()
        if turn_sum is None:
            turn_sum, turn_count = torch.zeros(num_turns, hidden.shape[-1]), torch.zeros(num_turns)
            word_sum = torch.zeros(num_words, hidden.shape[-1])
        for row, (turn, ids, owner) in enumerate(part):
            h = hidden[row, : len(ids)]
            turn_sum[turn] += h.sum(0)
            turn_count[turn] += len(ids)
            own = torch.tensor(owner)
            real = own >= 0
            word_sum.index_add_(0, own[real], h[real])
            word_count.index_add_(0, own[real], torch.ones(int(real.sum())))
    pooled = PooledTurns(turn_sum, turn_count, word_sum, word_count, word_turn.long(), normalize, model_turns)
    return pooled, word_sum / word_count[:, None].clamp(min=1)


def projection(dim: int, k: int = 8, seed: int = 0) -> Tensor:
    """[k, dim] Gaussian projection scaled by 1/sqrt(k) (norms preserved in expectation)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, dim, generator=g) / k**0.5


def coupling_exact(
    pooled: PooledTurns, imagine: ImagineFn, proj: Tensor | None = None, batch_size: int = 64
) -> Tensor:
    """[N] exact occlusion coupling ``|V - V_-i| + ||P (g - g_-i)||`` (0 for unread words)."""
    base = pooled.pooled()[: pooled.model_turns]
    with torch.no_grad():
        v0, g0 = imagine(base[None])
        proj = projection(g0.shape[-1]) if proj is None else proj
        pg0 = g0 @ proj.T
        out = torch.zeros(len(pooled.word_turn))
        seen = pooled.coupled.nonzero().squeeze(1)
        for b in range(0, len(seen), batch_size):
            words = seen[b : b + batch_size]
            turns = base.expand(len(words), -1, -1).clone()
            turns[torch.arange(len(words)), pooled.word_turn[words]] = pooled.occluded(words)
            v, g = imagine(turns)
            out[words] = (v - v0).abs() + (g @ proj.T - pg0).norm(dim=-1)
    return out


def coupling_fast(pooled: PooledTurns, imagine: ImagineFn, proj: Tensor | None = None) -> Tensor:
    """[N] gradient x input coupling: the first-order estimate of `coupling_exact`.

    One forward pass of the world model plus ``1 + K`` vector-Jacobian products with
    respect to the turn embeddings (batched with ``torch.func.vmap``).
    """
    base = pooled.pooled()[: pooled.model_turns].detach().requires_grad_(True)
    value, future = imagine(base[None])
    proj = projection(future.shape[-1]) if proj is None else proj
    outputs = torch.cat([value.reshape(1), (future[0] @ proj.T)])  # [1 + K]
    eye = torch.eye(len(outputs))
    (jac,) = torch.autograd.grad(outputs, base, grad_outputs=eye, is_grads_batched=True)  # [1 + K, T, H]
    direction = pooled.removal_direction()  # [N, H]
    turn = torch.where(pooled.coupled, pooled.word_turn, torch.zeros_like(pooled.word_turn))
    change = torch.cat(
        [
            torch.einsum("ond,nd->no", jac[:, turn[b : b + 512]], direction[b : b + 512])
            for b in range(0, len(turn), 512)
        ]
    )  # [N, 1 + K], linear in N (words batched)
    out = change[:, 0].abs() + change[:, 1:].norm(dim=-1)
    return torch.where(pooled.coupled, out, torch.zeros_like(out)).detach()


def salience(pooled: PooledTurns, word_vectors: Tensor) -> Tensor:
    """[N] query-independent salience: distance of a word's mean piece vector from its turn's mean.

    Words that carry what the rest of their turn does not (names, numbers, rare content)
    lie far from the turn centroid; function words lie close to it.
    """
    t = pooled.word_turn
    centroid = pooled.turn_sum[t] / pooled.turn_count[t][:, None].clamp(min=1e-9)
    return (word_vectors - centroid).norm(dim=-1)
