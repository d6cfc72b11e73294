"""Networks and heads: shapes, symlog targets, zero-initialised two-hot heads."""

import math

import pytest
import torch

from worldmodel.heads import ContinueHead, TwoHotHead
from worldmodel.math import symlog
from worldmodel.nets import MLP, ConvDecoder, ConvEncoder, VectorDecoder, VectorEncoder, image_to_input


def test_mlp_layers_and_shapes():
    mlp = MLP(5, 3, units=8, layers=2)
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Linear", "LayerNorm", "SiLU", "Linear", "LayerNorm", "SiLU", "Linear"]
    assert mlp(torch.randn(2, 4, 5)).shape == (2, 4, 3)
    assert MLP(5, None, units=8, layers=1)(torch.randn(7, 5)).shape == (7, 8)


def test_vector_encoder_squashes_with_symlog():
    enc = VectorEncoder(2, units=4, layers=1)
    x = torch.tensor([[1e6, -3.0]])
    lin = enc.mlp[0]
    pre = lin(symlog(x))
    assert torch.allclose(enc.mlp[2](enc.mlp[1](pre)), enc(x))


def test_vector_decoder_symlog_mse():
    dec = VectorDecoder(4, 2, units=8, layers=1)
    feat = torch.randn(3, 4)
    target = torch.tensor([[math.e - 1, 0.0]] * 3)
    expected = ((dec(feat) - torch.tensor([1.0, 0.0])) ** 2).sum(-1)
    assert torch.allclose(dec.loss(feat, target), expected)


def test_conv_encoder_decoder_shapes_and_mse():
    enc = ConvEncoder(3, depth=4)
    img = torch.randint(0, 256, (2, 5, 64, 64, 3), dtype=torch.uint8)
    assert enc(img).shape == (2, 5, enc.out_dim) and enc.out_dim == 32 * 16
    dec = ConvDecoder(10, 3, depth=4)
    feat = torch.randn(2, 5, 10)
    assert dec(feat).shape == (2, 5, 3, 64, 64)
    centred = image_to_input(img)
    assert centred.shape == (2, 5, 3, 64, 64) and centred.min() >= -0.5 and centred.max() <= 0.5
    expected = ((dec(feat) - centred) ** 2).sum((-3, -2, -1))
    assert torch.allclose(dec.loss(feat, img), expected)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_twohot_head_starts_at_zero_and_learns_a_large_target():
    torch.manual_seed(0)
    head = TwoHotHead(4, units=16, layers=1)
    feat = torch.randn(8, 4)
    assert torch.equal(head.mean(feat), torch.zeros(8))
    assert head.loss(feat, torch.zeros(8)).shape == (8,)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        head.loss(feat, torch.full((8,), 500.0)).mean().backward()
        opt.step()
    assert head.mean(feat).mean().item() == pytest.approx(500.0, rel=0.05)


def test_continue_head_bce():
    head = ContinueHead(4, units=8, layers=1)
    feat = torch.randn(5, 4)
    p = head.prob(feat)
    cont = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    expected = -(cont * p.log() + (1 - cont) * (1 - p).log())
    assert torch.allclose(head.loss(feat, cont), expected, atol=1e-5)
