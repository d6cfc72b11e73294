"""Hand-computed checks of worldmodel.math."""

import math

import pytest
import torch

from worldmodel.math import (
    ReturnNormalizer,
    TwoHot,
    categorical_kl,
    kl_balance,
    lambda_return,
    symexp,
    symlog,
    unimix_logits,
)


def test_symlog_values_and_inverse():
    x = torch.tensor([-(math.e - 1), 0.0, math.e - 1, 1e6])
    assert torch.allclose(symlog(x)[:3], torch.tensor([-1.0, 0.0, 1.0]))
    grid = torch.linspace(-50, 50, 101, dtype=torch.float64)
    assert torch.allclose(symexp(symlog(grid)), grid)
    assert torch.allclose(symlog(symexp(grid / 10)), grid / 10)


def test_twohot_two_bins_encode_loss_and_gradient():
    th = TwoHot(num_bins=2, low=0.0, high=1.0, transform=False)
    assert torch.allclose(th.encode(torch.tensor(0.25)), torch.tensor([0.75, 0.25]))
    logits = torch.zeros(2, requires_grad=True)
    loss = th.loss(logits, torch.tensor(0.25))
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    # d CE / d logits = softmax - target = [0.5 - 0.75, 0.5 - 0.25]
    assert torch.allclose(logits.grad, torch.tensor([-0.25, 0.25]))
    assert th.decode(torch.tensor([0.0, math.log(3)])).item() == pytest.approx(0.75)


def test_twohot_default_bins_roundtrip_and_clamp():
    th = TwoHot()
    assert th.num_bins == 255
    assert th.bins[0].item() == -20 and th.bins[-1].item() == 20
    y = torch.tensor([-1234.5, -1.0, 0.0, 0.3, 3.7, 1e5])
    target = th.encode(y)
    assert torch.allclose(target.sum(-1), torch.ones(6))
    assert ((target > 0).sum(-1) <= 2).all()
    decoded = th.decode(torch.log(target))
    assert torch.allclose(decoded, y, rtol=1e-4, atol=1e-5)
    # beyond the last bin the code saturates at symexp(20)
    assert th.encode(torch.tensor(1e30))[-1].item() == pytest.approx(1.0)


def test_twohot_loss_equals_dense_cross_entropy_on_default_bins():
    th = TwoHot()
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 255, requires_grad=True)
    y = torch.tensor([-1e6, -3.0, -0.2, 0.0, 0.7, 5.0, 42.0, 1e4, 1e30, 0.01, -7.5, 2.0]).reshape(4, 3)
    dense = -(th.encode(y) * logits.log_softmax(-1)).sum(-1)
    fast = th.loss(logits, y)
    assert torch.allclose(fast, dense, atol=1e-5)
    (g_dense,) = torch.autograd.grad(dense.sum(), logits)
    (g_fast,) = torch.autograd.grad(fast.sum(), logits)
    assert torch.allclose(g_fast, g_dense, atol=1e-6)


def test_lambda_return_three_steps_with_terminal_in_the_middle():
    reward = torch.tensor([[1.0, 2.0, 3.0]])
    cont = torch.tensor([[1.0, 0.0, 1.0]])
    value = torch.tensor([[10.0, 20.0, 30.0]])
    ret = lambda_return(reward, cont, value, gamma=0.9, lam=0.5)
    # R2 = 3 + .9 * 30 = 30 ; R1 = 2 (terminal) ; R0 = 1 + .9 * (.5 * 10 + .5 * 2) = 6.4
    assert torch.allclose(ret, torch.tensor([[6.4, 2.0, 30.0]]))
    with pytest.raises(ValueError, match="shapes"):
        lambda_return(reward, cont[:, :2], value, 0.9, 0.5)


def test_lambda_return_with_per_step_lambda_stops_chaining():
    reward = torch.tensor([[1.0, 1.0]])
    cont = torch.ones(1, 2)
    value = torch.tensor([[6.0, 7.0]])
    lam = torch.tensor([[0.0, 0.5]])  # an episode ends at step 1: R0 must not use R1
    ret = lambda_return(reward, cont, value, gamma=0.9, lam=lam)
    # R1 = 1 + .9 * 7 = 7.3 ; R0 = 1 + .9 * 6 = 6.4
    assert torch.allclose(ret, torch.tensor([[6.4, 7.3]]))


def test_lambda_return_limits_lambda_zero_and_one():
    reward = torch.tensor([[1.0, 1.0]])
    cont = torch.ones(1, 2)
    value = torch.tensor([[5.0, 7.0]])
    td0 = lambda_return(reward, cont, value, gamma=0.5, lam=0.0)
    assert torch.allclose(td0, torch.tensor([[1 + 0.5 * 5, 1 + 0.5 * 7]]))
    mc = lambda_return(reward, cont, value, gamma=0.5, lam=1.0)
    assert torch.allclose(mc, torch.tensor([[1 + 0.5 * (1 + 0.5 * 7), 1 + 0.5 * 7]]))


def test_return_normalizer_on_known_sample():
    norm = ReturnNormalizer(rate=1.0)
    norm.update(torch.arange(101, dtype=torch.float32))
    assert norm.low.item() == pytest.approx(5.0)
    assert norm.high.item() == pytest.approx(95.0)
    assert norm.scale().item() == pytest.approx(90.0)
    slow = ReturnNormalizer(rate=0.01)
    slow.update(torch.arange(101, dtype=torch.float32))
    assert slow.high.item() == pytest.approx(0.95)
    assert slow.scale().item() == 1.0  # limit: small returns are never amplified
    assert set(slow.state_dict()) == {"low", "high"}


def test_unimix_lower_bound():
    logits = torch.tensor([[100.0, 0.0, 0.0, 0.0]])
    probs = unimix_logits(logits, 0.01).exp()
    assert probs.min().item() >= 0.01 / 4 - 1e-7
    assert probs.sum().item() == pytest.approx(1.0)
    assert probs.min().item() == pytest.approx(0.0025, rel=1e-4)


def test_kl_balance_values_split_and_stop_gradients():
    post = torch.log(torch.tensor([[[0.5, 0.5]]])).requires_grad_()
    prior = torch.log(torch.tensor([[[0.25, 0.75]]])).requires_grad_()
    kl = 0.5 * math.log(4 / 3)
    assert categorical_kl(post, prior).item() == pytest.approx(kl, rel=1e-5)
    loss, m = kl_balance(post, prior, free=0.0, dyn_scale=0.5, rep_scale=0.1)
    assert loss.item() == pytest.approx(0.6 * kl, rel=1e-5)
    assert m["dyn"].item() == pytest.approx(kl, rel=1e-5)
    # dyn trains only the prior, rep only the posterior
    m["dyn"].sum().backward(retain_graph=True)
    assert post.grad is None and prior.grad.abs().sum() > 0
    prior.grad = None
    m["rep"].sum().backward()
    assert prior.grad is None and post.grad.abs().sum() > 0


def test_free_bits_clamp_and_zero_gradient():
    post = torch.log(torch.tensor([[[0.5, 0.5]]])).requires_grad_()
    prior = torch.log(torch.tensor([[[0.25, 0.75]]])).requires_grad_()
    loss, m = kl_balance(post, prior, free=1.0, dyn_scale=0.5, rep_scale=0.1)
    assert m["dyn"].item() == 1.0 and m["rep"].item() == 1.0
    assert loss.item() == pytest.approx(0.6)
    assert m["kl"].item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-5)
    loss.sum().backward()
    assert post.grad.abs().sum() == 0 and prior.grad.abs().sum() == 0
