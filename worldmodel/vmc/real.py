"""C in the real environment: many episodes in lockstep, on one or several processes.

Ha & Schmidhuber evolved CarRacing's controller on real returns (population 64, 16 episodes
per candidate). On a CPU the environment's step (Box2D and its renderer, ~5 ms for CarRacing)
dominates, so `lockstep_returns` steps one environment per episode together and runs V, M
and C once per step on the whole batch, and `RealPool` spreads the episodes of a CMA-ES
generation over worker processes (one per core).

``patience`` (training episodes only) ends an episode whose last ``patience`` rewards were
all <= 0 and charges the environment's ``stall_reward`` (CarRacing's -0.1 per frame) for each
remaining step: the return the episode would have if no further reward came. A car parked
on the grass costs a few dozen steps instead of a thousand.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from worldmodel.vmc.controller import LinearController
from worldmodel.vmc.mdn_rnn import MDNRNN
from worldmodel.vmc.vae import ConvVAE, frames_to_input


@torch.no_grad()
def lockstep_returns(
    envs: Sequence[Any],
    vae: ConvVAE,
    mdn: MDNRNN,
    controller: LinearController,
    params: Tensor,
    seeds: Sequence[int],
    max_steps: int | None = None,
    patience: int = 0,
) -> list[float]:
    """Real returns ``[K]`` of K episodes: episode k plays controller ``params[k]`` (``params
    [K, n]``) on ``envs[k]`` reset with env seed ``seeds[k]``, for at most ``max_steps`` steps
    (``None``: the environment's limit). ``patience`` > 0 ends stalled episodes early (module doc)."""
    count = len(seeds)
    if params.shape[0] != count or len(envs) < count:
        raise ValueError(
            f"{count} seeds need {count} controllers and environments, got {params.shape[0]} and {len(envs)}"
        )
    limit = envs[0].max_steps if max_steps is None else min(max_steps, envs[0].max_steps)
    frames = [env.reset(int(seed)) for env, seed in zip(envs, seeds, strict=False)]
    hc = mdn.initial_state(count)
    h = torch.zeros(count, mdn.hidden)
    totals, idle = np.zeros(count), np.zeros(count, np.int64)
    live = np.ones(count, bool)
    for t in range(limit):
        rows = np.flatnonzero(live)
        if rows.size == 0:
            break
        index = torch.as_tensor(rows)
        z = vae.encode(frames_to_input(torch.as_tensor(np.stack([frames[k] for k in rows]))))[0]
        out = controller(params[index], torch.cat([z, h[index]], -1)[:, None])[:, 0]
        action = envs[0].action_map(out)
        _, _, _, h_next, (h_lstm, c_lstm) = mdn.step(z, action, (hc[0][:, index], hc[1][:, index]))
        h[index], hc[0][:, index], hc[1][:, index] = h_next, h_lstm, c_lstm
        for row, k in enumerate(rows):
            frames[k], reward, done = envs[k].step(action[row].numpy())
            totals[k] += reward
            idle[k] = idle[k] + 1 if reward <= 0 else 0
            if done:
                live[k] = False
            elif patience > 0 and idle[k] >= patience:
                live[k] = False
                totals[k] += getattr(envs[k], "stall_reward", 0.0) * (limit - t - 1)
    return totals.tolist()


class _Side:
    """One process's share: its models and one environment per episode, built on first use."""

    def __init__(self, make_env: Callable[[], Any], models: tuple[Any, ...]) -> None:
        self.make_env, self.models, self.envs = make_env, models, []

    def run(self, params: Tensor, seeds: list[int], max_steps: int | None, patience: int) -> list[float]:
        while len(self.envs) < len(seeds):
            self.envs.append(self.make_env())
        return lockstep_returns(self.envs, *self.models, params, seeds, max_steps, patience)

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


_WORKER: list[_Side] = []  # a worker process's share, set by its initializer


def _init_worker(make_env: Callable[[], Any], models: tuple[Any, ...], threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.append(_Side(make_env, models))


def _run_chunk(args: tuple[Tensor, list[int], int | None, int]) -> list[float]:
    return _WORKER[0].run(*args)


class RealPool:
    """Real episodes of many controllers, split over ``workers`` processes (forked, so each one
    inherits V, M and C) or run in this process with ``workers=1``; each side keeps one
    environment per episode of its share, built by ``make_env()`` on first use."""

    def __init__(
        self,
        make_env: Callable[[], Any],
        vae: ConvVAE,
        mdn: MDNRNN,
        controller: LinearController,
        workers: int = 1,
        threads: int = 1,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers}: need at least one process")
        self.workers, models = workers, (vae, mdn, controller)
        self.local = _Side(make_env, models) if workers == 1 else None
        self.pool = None
        if workers > 1:
            context = multiprocessing.get_context("fork")
            self.pool = context.Pool(workers, _init_worker, (make_env, models, threads))

    def returns(
        self, params: Tensor, seeds: Sequence[int], max_steps: int | None, patience: int = 0
    ) -> list[float]:
        """``lockstep_returns`` of ``params [K, n]`` on env ``seeds [K]``, in contiguous chunks
        of about K / workers episodes per process; the order of ``seeds`` is kept."""
        bounds = np.linspace(0, len(seeds), min(self.workers, len(seeds)) + 1).astype(int)
        chunks = [
            (params[a:b], [int(s) for s in seeds[a:b]], max_steps, patience)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        parts = self.pool.map(_run_chunk, chunks) if self.pool else [self.local.run(*c) for c in chunks]
        return [r for part in parts for r in part]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
        if self.local is not None:
            self.local.close()

    def __enter__(self) -> RealPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
