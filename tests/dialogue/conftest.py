"""Shared fixtures: a tiny random BERT encoder (fast) saved once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ARRCOC_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def tiny_encoder_path(tmp_path_factory) -> str:
    from dialogue.encoder import save_tiny_encoder

    return str(save_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder")))
