"""Cached benchmark artefacts: rebuilt when missing or unreadable (truncated, corrupt).

Every write goes through worldmodel.checkpoint's atomic writers, so an interrupted run
leaves either a complete file or none; the next run resumes from the complete ones.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benches.relevance.lm import LMConfig, SmallLM
from worldmodel.checkpoint import CheckpointError, atomic_write_bytes, atomic_write_json

log = logging.getLogger("benches.relevance")


def cached_json(path: Path, build: Callable[[], Any], valid: Callable[[Any], bool] | None = None) -> Any:
    """Load JSON at ``path`` (if ``valid(value)``) or build, save atomically and return it."""
    if path.is_file():
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
            if valid is None or valid(value):
                return value
            log.warning("cache file %s was made for other instances; rebuilding it", path)
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            log.warning("cache file %s is unreadable; rebuilding it", path)
    value = build()
    atomic_write_json(path, value)
    return value


def cached_array(path: Path, build: Callable[[], np.ndarray], rows: int | None = None) -> np.ndarray:
    """Load a ``.npy`` array (checking its row count) or build and save it atomically."""
    if path.is_file():
        try:
            value = np.load(path, allow_pickle=False)
            if rows is None or len(value) == rows:
                return value
            log.warning("cache file %s has %d rows, expected %d; rebuilding it", path, len(value), rows)
        except (ValueError, OSError, EOFError):
            log.warning("cache file %s is unreadable; rebuilding it", path)
    value = build()
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
    return value


def cached_lm(path: Path, texts: Callable[[], list[str]], config: LMConfig, desc: str) -> SmallLM:
    """Load a trained SmallLM or train and save it (a corrupt file is retrained)."""
    if path.is_file():
        try:
            return SmallLM.load(path)
        except (CheckpointError, KeyError, RuntimeError, TypeError):
            log.warning("cached LM %s is unreadable; retraining it", path)
    lm = SmallLM.train(texts(), config, desc=desc)
    lm.save(path)
    return lm
