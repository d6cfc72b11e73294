"""Deterministic splits by hashed root id (the protocol of the relevance benchmark).

ShareGPT splits long conversations into segments with ids ``<root>_<n>``; all segments of
one conversation share a root and therefore a split. ``bucket = sha1(root_id) mod 10``:
buckets 0-7 are ``train``, 8 ``dev``, 9 ``test``. The train split is halved by the same
hash: buckets 0-3 are half ``A`` (world model, scorer LMs, TF-IDF statistics), 4-7 half
``B`` (the benchmark's judge LM only).
"""

from __future__ import annotations

import hashlib
import re

SPLITS = ("train", "dev", "test")
_SEGMENT = re.compile(r"^(?P<root>.+)_(?P<n>\d+)$")


def root_id(dialogue_id: str) -> str:
    """The conversation root of a segment id: ``"QWJhYvA_3" -> "QWJhYvA"``; other ids unchanged."""
    match = _SEGMENT.match(str(dialogue_id))
    return match.group("root") if match else str(dialogue_id)


def split_bucket(dialogue_id: str) -> int:
    """``int(sha1(root_id(dialogue_id)).hexdigest(), 16) % 10``, in 0..9."""
    digest = hashlib.sha1(root_id(dialogue_id).encode("utf-8")).hexdigest()
    return int(digest, 16) % 10


def split_of(dialogue_id: str) -> str:
    """``"train"`` (buckets 0-7), ``"dev"`` (8) or ``"test"`` (9)."""
    bucket = split_bucket(dialogue_id)
    return "train" if bucket < 8 else ("dev" if bucket == 8 else "test")


def train_half(dialogue_id: str) -> str | None:
    """``"A"`` (buckets 0-3), ``"B"`` (4-7), or None for dev/test ids."""
    bucket = split_bucket(dialogue_id)
    return None if bucket >= 8 else ("A" if bucket < 4 else "B")


def in_split(dialogue_id: str, split: str) -> bool:
    """Membership test for ``split`` in {"train", "dev", "test", "train_A", "train_B", "all"}."""
    if split == "all":
        return True
    if split in ("train_A", "train_B"):
        return train_half(dialogue_id) == split[-1]
    if split not in SPLITS:
        raise ValueError(
            f"unknown split {split!r}; use one of train, dev, test, train_A, train_B, all"
        )
    return split_of(dialogue_id) == split
