"""TurnEncoder: reference agreement with sentence-transformers, pooling, soft occlusion, freezing."""

from __future__ import annotations

import pytest
import torch

from dialogue.encoder import EncoderError, TurnEncoder, masked_mean, resolve_encoder_path


def test_masked_mean_hand_computed():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    weights = torch.tensor([[1.0, 0.5, 0.0]])
    # (1*[1,2] + 0.5*[3,4]) / 1.5 = [2.5/1.5, 4/1.5]
    assert torch.allclose(masked_mean(hidden, weights), torch.tensor([[2.5 / 1.5, 4.0 / 1.5]]))
    assert torch.equal(masked_mean(hidden, torch.zeros(1, 3)), torch.zeros(1, 2))


def test_default_encoder_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    texts = ["Hello there, how are you?", "The cat sat on the mat."]
    ours = TurnEncoder().encode(texts)
    reference = SentenceTransformer(resolve_encoder_path("default"), device="cpu").encode(texts)
    assert ours.shape == (2, 384)
    assert torch.allclose(ours, torch.as_tensor(reference), atol=1e-4)


def test_token_weights_are_a_differentiable_soft_occlusion(tiny_encoder_path):
    enc = TurnEncoder(tiny_encoder_path)
    batch = enc.tokenize(["the cat sat on the mat", "hi"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    pooled, hidden = enc.encode_tokens(ids, mask)
    assert pooled.shape == (2, enc.dim) and hidden.shape == (*ids.shape, enc.dim)
    ones = torch.ones_like(mask, dtype=torch.float)
    assert torch.allclose(enc.encode_tokens(ids, mask, ones)[0], pooled)
    # Weight 0 on token 2 == removing it from the pooling mask (hidden states are unchanged).
    weights = ones.clone()
    weights[0, 2] = 0.0
    removed = mask.clone()
    removed[0, 2] = 0
    occluded = enc.encode_tokens(ids, mask, weights)[0]
    expected = torch.nn.functional.normalize(masked_mean(hidden, removed), dim=-1)
    assert torch.allclose(occluded, expected, atol=1e-6) and not torch.allclose(
        occluded[0], pooled[0]
    )
    weights = ones.clone().requires_grad_(True)
    enc.encode_tokens(ids, mask, weights)[0][0].sum().backward()
    assert weights.grad[0, 1:4].abs().sum() > 0 and weights.grad[1].abs().sum() == 0
    with pytest.raises(ValueError, match="token_weights must have shape"):
        enc.encode_tokens(ids, mask, ones[:, :2])


def test_frozen_by_default_and_trainable_option(tiny_encoder_path):
    frozen = TurnEncoder(tiny_encoder_path)
    frozen.train()
    assert not frozen.model.training and not any(p.requires_grad for p in frozen.parameters())
    tuned = TurnEncoder(tiny_encoder_path, trainable=True)
    tuned.train()
    assert tuned.model.training and all(p.requires_grad for p in tuned.parameters())
    tuned(["a turn"]).sum().backward()
    assert tuned.model.get_input_embeddings().weight.grad is not None


def test_fingerprint_identifies_weights(tiny_encoder_path):
    a = TurnEncoder(tiny_encoder_path).fingerprint()
    assert a == TurnEncoder(tiny_encoder_path).fingerprint()
    assert a["hidden_size"] == 32 and a["vocab_size"] == 30522


def test_missing_encoder_raises_readable_error(tmp_path):
    with pytest.raises(EncoderError, match="cannot load encoder"):
        TurnEncoder(str(tmp_path / "no_such_model"))
