"""World model: shapes, input validation and learning on a deterministic toy environment."""

import math

import pytest
import torch

from worldmodel.presets import LossConfig, ModelConfig
from worldmodel.world_model import WorldModel, WorldModelInputError

TINY = ModelConfig(deter=32, stoch=4, classes=4, hidden=32, units=32, enc_layers=1, head_layers=1,
                   ac_layers=1, cnn_depth=2, gru_blocks=1)


def ring_batch(batch: int = 8, length: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """A deterministic ring of 8 cells; actions move left/right; reward 1 in cell 0."""
    g = torch.Generator().manual_seed(seed)
    moves = torch.randint(0, 2, (batch, length), generator=g)
    pos = torch.zeros(batch, dtype=torch.long)
    obs, action, reward = [], [], []
    for t in range(length):
        if t > 0:
            pos = (pos + 2 * moves[:, t] - 1) % 8
        angle = 2 * math.pi * pos / 8
        obs.append(torch.stack([angle.cos(), angle.sin(), pos / 7], -1))
        act = torch.nn.functional.one_hot(moves[:, t], 2).float() * (t > 0)
        action.append(act)
        reward.append((pos == 0).float())
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    return {
        "vector": torch.stack(obs, 1), "action": torch.stack(action, 1), "reward": torch.stack(reward, 1),
        "is_first": is_first, "is_terminal": torch.zeros(batch, length, dtype=torch.bool),
    }


def test_loss_shapes_and_metrics_with_vector_and_image():
    torch.manual_seed(0)
    wm = WorldModel({"vector": (3,), "image": (64, 64, 3)}, 2, TINY, LossConfig())
    batch = ring_batch(2, 3)
    batch["image"] = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8)
    loss, post, metrics = wm.loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert post["deter"].shape == (2, 3, 32) and post["stoch"].shape == (2, 3, 4, 4)
    for key in ("recon_vector", "recon_image", "reward", "cont", "dyn", "rep", "kl", "model"):
        assert math.isfinite(metrics[f"loss/{key}"])
    loss.backward()
    assert all(p.grad is not None for p in wm.encoders.parameters())


def test_loss_scales_come_from_the_config():
    batch = ring_batch(2, 4)
    torch.manual_seed(0)
    base = WorldModel({"vector": (3,)}, 2, TINY, LossConfig(free_nats=0.0))
    torch.manual_seed(0)
    scaled = WorldModel({"vector": (3,)}, 2, TINY, LossConfig(free_nats=0.0, recon=2.0))
    torch.manual_seed(1)
    _, _, m = base.loss(batch)
    torch.manual_seed(1)
    loss2, _, _ = scaled.loss(batch)
    expected = m["loss/model"] + m["loss/recon_vector"]
    assert loss2.item() == pytest.approx(expected, rel=1e-5)


def test_bad_observation_spaces():
    with pytest.raises(WorldModelInputError, match="observation keys"):
        WorldModel({"pixels": (64, 64, 3)}, 2, TINY, LossConfig())
    with pytest.raises(WorldModelInputError, match="64, 64"):
        WorldModel({"image": (32, 32, 3)}, 2, TINY, LossConfig())


pytestmark = pytest.mark.usefixtures("one_thread")


def test_loss_halves_on_a_fixed_batch_of_a_deterministic_toy_env():
    torch.manual_seed(0)
    wm = WorldModel({"vector": (3,)}, 2, TINY, LossConfig())
    batch = ring_batch()
    opt = torch.optim.Adam(wm.parameters(), lr=3e-3)
    first = None
    for _ in range(100):
        loss, _, _ = wm.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.5 * first, (first, loss.item())
