"""A small causal transformer that decodes a turn's text from the world model's latent.

The latent features ``[N, F]`` and the speaker role become one prefix vector at position
0, so position j predicts token j (teacher forcing): ``x = [prefix, y_0, ..., y_{L-2}]``,
targets ``y_0 .. y_{L-1}`` (ending in ``<eos>``). Input and output embeddings are tied.

Role ids: 0 = user, 1 = assistant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dialogue.bpe import EOS_ID, PAD_ID

ROLE_IDS = {"user": 0, "assistant": 1}


class TurnDecoder(nn.Module):
    """Causal transformer conditioned on a latent prefix.

    Args:
        cond_dim: size F of the conditioning features.
        vocab_size: BPE vocabulary size V.
        dim, layers, heads: transformer width, depth and attention heads.
        max_tokens: longest target sequence L (``<eos>`` included).
    """

    def __init__(
        self,
        cond_dim: int,
        vocab_size: int,
        dim: int = 192,
        layers: int = 2,
        heads: int = 4,
        max_tokens: int = 48,
    ) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.cond = nn.Sequential(nn.Linear(cond_dim, dim), nn.LayerNorm(dim))
        self.role = nn.Embedding(len(ROLE_IDS), dim)
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.position = nn.Embedding(max_tokens, dim)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=4 * dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.normal_(self.position.weight, std=0.02)

    def logits(self, cond: Tensor, role: Tensor, targets: Tensor) -> Tensor:
        """Teacher-forced logits. ``cond [N, F]``, ``role [N]``, ``targets [N, L]`` -> ``[N, L, V]``."""
        length = targets.shape[1]
        if length > self.max_tokens:
            raise ValueError(
                f"target length {length} exceeds the decoder's max_tokens={self.max_tokens}"
            )
        prefix = (self.cond(cond) + self.role(role)).unsqueeze(1)
        x = torch.cat([prefix, self.tokens(targets[:, :-1])], 1) + self.position.weight[:length]
        mask = nn.Transformer.generate_square_subsequent_mask(
            length, device=x.device, dtype=x.dtype
        )
        hidden = self.norm(self.blocks(x, mask=mask, is_causal=True))
        return hidden @ self.tokens.weight.T

    def surprisal(self, cond: Tensor, role: Tensor, targets: Tensor) -> Tensor:
        """Per-token surprisal ``-log p(y_j | y_<j, latent)`` in nats, ``[N, L]``; 0 at padding."""
        logits = self.logits(cond, role, targets)
        nll = F.cross_entropy(
            logits.transpose(1, 2), targets, reduction="none", ignore_index=PAD_ID
        )
        return nll * (targets != PAD_ID)

    @torch.no_grad()
    def generate(
        self,
        cond: Tensor,
        role: Tensor,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> list[list[int]]:
        """Decode ``N`` token-id lists (without ``<eos>``); greedy when ``temperature == 0``."""
        limit = min(max_tokens or self.max_tokens, self.max_tokens)
        seqs = torch.full((cond.shape[0], 1), PAD_ID, dtype=torch.long, device=cond.device)
        done = torch.zeros(cond.shape[0], dtype=torch.bool, device=cond.device)
        for _ in range(limit):
            step = self.logits(cond, role, torch.cat([seqs[:, 1:], seqs[:, :1]], 1))[:, -1]
            step[:, PAD_ID] = float("-inf")
            if temperature > 0:
                probs = (step / temperature).softmax(-1)
                token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            else:
                token = step.argmax(-1)
            token = torch.where(done, torch.full_like(token, EOS_ID), token)
            seqs = torch.cat([seqs, token[:, None]], 1)
            done |= token == EOS_ID
            if bool(done.all()):
                break
        out = []
        for row in seqs[:, 1:].tolist():
            out.append(row[: row.index(EOS_ID)] if EOS_ID in row else row)
        return out
