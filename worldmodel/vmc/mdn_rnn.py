"""M: the MDN-RNN of Ha & Schmidhuber (2018).

An LSTM reads ``[z_t, a_t]`` and its output parameterises, independently for each of
the ``Z`` latent dimensions, a mixture of ``K`` Gaussians over ``z_{t+1}``; two more
heads predict the reward and the "done" flag of the transition (the paper predicts done
for VizDoom; the reward head lets CarRacing be learned entirely in the dream too).
Sampling uses a temperature ``tau``: mixture logits are divided by ``tau`` and the
standard deviations multiplied by ``sqrt(tau)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def mdn_nll(logpi: Tensor, mu: Tensor, logsigma: Tensor, target: Tensor) -> Tensor:
    """Negative log-likelihood of ``target`` under per-dimension Gaussian mixtures.

    Args:
        logpi: ``[..., Z, K]`` log mixture weights (normalised over ``K``).
        mu, logsigma: ``[..., Z, K]`` component means and log standard deviations.
        target: ``[..., Z]``.
    Returns:
        ``[...]`` the NLL summed over ``Z`` (log-sum-exp over ``K`` for stability).
    """
    z = (target.unsqueeze(-1) - mu) * torch.exp(-logsigma)
    log_normal = -0.5 * z.pow(2) - logsigma - LOG_SQRT_2PI
    return -torch.logsumexp(logpi + log_normal, dim=-1).sum(-1)


class MDNRNN(nn.Module):
    """The M model.

    Args:
        z_dim: ``Z``; action_dim: ``A``; hidden: LSTM size ``H``; mixtures: ``K``.
        done_weight: BCE weight of the rare done steps in `loss` (the paper's
            ``restart_factor``, 10). The weighting multiplies the learned odds of "done" by
            it, so `step` divides them back out and returns a calibrated probability.
    Shapes: ``forward(z [B, T, Z], a [B, T, A], state)`` -> ``(logpi, mu, logsigma)``
    ``[B, T, Z, K]``, ``reward [B, T]``, ``done_logit [B, T]``, the LSTM output ``[B, T, H]``
    and the new ``(h, c)`` each ``[1, B, H]``.
    """

    def __init__(
        self,
        z_dim: int = 32,
        action_dim: int = 3,
        hidden: int = 256,
        mixtures: int = 5,
        done_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.z_dim, self.action_dim, self.hidden, self.mixtures = z_dim, action_dim, hidden, mixtures
        self.done_weight = done_weight
        self.lstm = nn.LSTM(z_dim + action_dim, hidden, batch_first=True)
        self.mdn = nn.Linear(hidden, 3 * z_dim * mixtures)
        self.reward = nn.Linear(hidden, 1)
        self.done = nn.Linear(hidden, 1)

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(1, batch, self.hidden, device=device)
        return zeros, zeros.clone()

    def forward(self, z: Tensor, action: Tensor, state: tuple[Tensor, Tensor] | None = None):
        out, state = self.lstm(torch.cat([z, action], -1), state)
        params = self.mdn(out).reshape(*out.shape[:-1], 3, self.z_dim, self.mixtures)
        logpi = params[..., 0, :, :].log_softmax(-1)
        mu, logsigma = params[..., 1, :, :], params[..., 2, :, :].clamp(-7.0, 3.0)
        return logpi, mu, logsigma, self.reward(out).squeeze(-1), self.done(out).squeeze(-1), out, state

    def loss(
        self,
        z: Tensor,
        action: Tensor,
        next_z: Tensor,
        reward: Tensor,
        done: Tensor,
        mask: Tensor,
    ) -> tuple[Tensor, dict[str, float]]:
        """Masked mean over steps of ``NLL / Z + MSE(reward) + BCE(done)``.

        ``z, next_z [B, T, Z]``, ``action [B, T, A]``, ``reward, done, mask [B, T]``.
        The BCE of the done steps is scaled by the model's ``done_weight`` (``pos_weight``).
        """
        logpi, mu, logsigma, reward_pred, done_logit, _, _ = self(z, action)
        weight = mask.float() / mask.float().sum().clamp(min=1.0)
        nll = (mdn_nll(logpi, mu, logsigma, next_z) / self.z_dim * weight).sum()
        mse = ((reward_pred - reward).pow(2) * weight).sum()
        pos_weight = torch.tensor(self.done_weight, device=done_logit.device)
        bce = F.binary_cross_entropy_with_logits(done_logit, done.float(), reduction="none",
                                                 pos_weight=pos_weight)
        bce = (bce * weight).sum()
        return nll + mse + bce, {
            "mdn/nll": nll.item(),
            "mdn/reward_mse": mse.item(),
            "mdn/done_bce": bce.item(),
        }

    @torch.no_grad()
    def step(self, z: Tensor, action: Tensor, state: tuple[Tensor, Tensor], tau: float = 1.0):
        """One dream step for a batch: ``z [N, Z]``, ``action [N, A]`` -> ``(next_z [N, Z]
        sampled at temperature tau, reward [N], done_prob [N], h [N, H], new state)``.

        ``done_prob`` is calibrated: the odds learned under ``done_weight`` divided by it."""
        logpi, mu, logsigma, reward, done_logit, out, state = self(z[:, None], action[:, None], state)
        return (
            sample_mixture(logpi[:, 0], mu[:, 0], logsigma[:, 0], tau),
            reward[:, 0],
            (done_logit[:, 0] - math.log(self.done_weight)).sigmoid(),
            out[:, 0],
            state,
        )


def sample_mixture(logpi: Tensor, mu: Tensor, logsigma: Tensor, tau: float) -> Tensor:
    """Sample ``[N, Z]`` from per-dimension mixtures ``[N, Z, K]`` at temperature ``tau``."""
    if tau <= 0:
        raise ValueError(f"MDN temperature tau={tau} must be positive")
    weights = torch.softmax(logpi / tau, dim=-1)
    k = torch.multinomial(weights.reshape(-1, weights.shape[-1]), 1).reshape(weights.shape[:-1])
    chosen_mu = mu.gather(-1, k.unsqueeze(-1)).squeeze(-1)
    chosen_sigma = logsigma.gather(-1, k.unsqueeze(-1)).squeeze(-1).exp()
    return chosen_mu + chosen_sigma * math.sqrt(tau) * torch.randn_like(chosen_mu)
