"""Evolve the controller entirely inside the dream (the MDN-RNN), with CMA-ES.

The dream starts from latent codes of real first frames, feeds the controller's action
to the MDN-RNN, samples the next ``z`` at temperature ``tau``, and sums the predicted
rewards while the dream episode is alive. ``done`` says how M's done probability p ends it:

* ``threshold`` (Ha & Schmidhuber's VizDoom dream): the episode ends once M's done
  logit, trained with ``done_weight`` w on done steps, is positive: calibrated p > 1/(1+w);
* ``sample``: it ends with probability p at each step (a coin flip of a rare event at
  every step: far shorter and noisier dream episodes than real ones);
* ``expected``: no coin flips; each reward is weighted by the predicted probability of
  being alive, ``prod (1 - p)`` (as Dreamer weights imagined rewards by continues).

With ``lives`` > 1 (``threshold`` or ``sample``), a dream episode ends at the ``lives``-th
predicted "done" event (a step where it fires after one where it did not): in take_cover,
M flags non-fatal fireball hits as often as fatal ones (it cannot see the health), and a
real episode takes ~1.65 hits.

All candidates of a CMA-ES generation and all their rollouts form one batch; rollouts
leave it when they end, so a step costs only what is still alive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from worldmodel.vmc.cmaes import evolve
from worldmodel.vmc.controller import LinearController
from worldmodel.vmc.mdn_rnn import MDNRNN

ActionMap = Callable[[Tensor], Tensor]
DONE_MODES = ("threshold", "sample", "expected")


def _check_done(done: str, lives: int = 1) -> None:
    if done not in DONE_MODES:
        raise ValueError(f"dream done={done!r}: choose one of {', '.join(DONE_MODES)}")
    if lives < 1 or (lives > 1 and done == "expected"):
        raise ValueError(f"dream lives={lives} needs lives >= 1, and 1 with done='expected'")


@dataclass
class DreamConfig:
    """CMA-ES in the dream (the paper: population 64, 16 rollouts, tau 1.15 for VizDoom)."""

    generations: int = 30
    population: int = 32
    rollouts: int = 8
    horizon: int = 300
    tau: float = 1.15
    sigma0: float = 0.1
    seed: int = 0
    eval_every: int = 5  # generations between evaluations of the distribution mean ...
    eval_rollouts: int = 32  # ... on this many dream rollouts; the best one evaluated is returned
    done: str = "threshold"  # how M's done probability ends a dream: threshold, sample, expected
    lives: int = 1  # a dream episode ends at this many predicted done events

    def __post_init__(self) -> None:  # fail at configuration time, not after V and M are trained
        _check_done(self.done, self.lives)


@torch.no_grad()
def dream_returns(
    mdn: MDNRNN,
    controller: LinearController,
    params: Tensor,
    start_z: Tensor,
    action_map: ActionMap,
    horizon: int,
    tau: float,
    done: str = "threshold",
    lives: int = 1,
) -> Tensor:
    """Mean dream return of each candidate controller.

    Args:
        params: ``[P, n]`` controller parameters.
        start_z: ``[M, Z]`` initial latent codes; candidate ``p`` runs one rollout from each.
        action_map: controller outputs ``[N, out]`` -> the action vectors ``[N, A]`` M was trained on.
        done: ``threshold``, ``sample`` or ``expected`` (see the module docstring).
        lives: the episode ends at this many done events (rising edges), not the first.
    Returns:
        ``[P]`` returns averaged over the ``M`` rollouts.
    """
    _check_done(done, lives)
    pop, rollouts = params.shape[0], start_z.shape[0]
    threshold = 1.0 / (1.0 + mdn.done_weight)  # calibrated p above it <=> M's weighted logit > 0
    z = start_z.repeat(pop, 1)  # row p * M + m
    live = torch.arange(pop * rollouts, device=z.device)  # rows still running; ended rows are dropped
    candidate = live // rollouts
    state = mdn.initial_state(pop * rollouts, z.device)
    h = torch.zeros(pop * rollouts, mdn.hidden, device=z.device)
    alive = torch.ones(pop * rollouts, device=z.device)  # of the live rows
    lives_left = torch.full_like(alive, float(lives))
    was_done = torch.zeros_like(alive, dtype=torch.bool)  # the done event fired at the last step
    total = torch.zeros_like(alive)
    for _ in range(horizon):
        action = action_map(controller.rows(params, torch.cat([z, h], -1), candidate[live]))
        z, reward, done_prob, h, state = mdn.step(z, action, state, tau)
        total[live] += alive * reward
        if done == "expected":
            alive = alive * (1.0 - done_prob)
        else:
            event = torch.rand_like(done_prob) < done_prob if done == "sample" else done_prob > threshold
            lives_left = lives_left - (event & ~was_done).float()
            was_done = event
            alive = alive * (lives_left > 0).float()
        keep = alive > 1e-6  # ended (or all but certainly ended) rows leave the batch
        if not bool(keep.all()):
            live, z, h, alive = live[keep], z[keep], h[keep], alive[keep]
            lives_left, was_done = lives_left[keep], was_done[keep]
            state = (state[0][:, keep], state[1][:, keep])
        if len(live) == 0:
            break
    return total.reshape(pop, rollouts).mean(1)


def evolve_controller(
    mdn: MDNRNN,
    controller: LinearController,
    start_z: Tensor,
    action_map: ActionMap,
    config: DreamConfig,
    x0: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """C by CMA-ES on the dream return (`worldmodel.vmc.cmaes.evolve`, from ``x0 [n]``, default
    zeros); each scoring draws its rollouts' first latent codes at random from ``start_z [R, Z]``."""
    generator = torch.Generator().manual_seed(config.seed)

    def fitness(params: Tensor, rollouts: int) -> Tensor:
        starts = start_z[torch.randint(start_z.shape[0], (rollouts,), generator=generator)]
        dream = (action_map, config.horizon, config.tau, config.done, config.lives)
        return dream_returns(mdn, controller, params, starts, *dream)

    return evolve(controller.num_params, fitness, config, "CMA-ES in the dream", x0)
