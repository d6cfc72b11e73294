"""C in the real environment: many episodes in lockstep, on one or several processes.

Ha & Schmidhuber evolved CarRacing's controller on real returns (population 64, 16 episodes
per candidate). On a CPU the environment's step (Box2D and its renderer, ~5 ms for CarRacing)
dominates, so `lockstep_returns` steps one environment per episode together and runs V, M
and C once per step on the whole batch, and `RealPool` spreads the episodes of a CMA-ES
generation over worker processes (one per core).

``patience`` (training episodes only) ends an episode whose last ``patience`` rewards were
all <= 0 and charges the environment's ``stall_reward`` (CarRacing's -0.1 per frame) for each
remaining step: the return the episode would have if no further reward came. A car parked
on the grass costs ``patience`` steps instead of a thousand.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
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
    [K, n]``) on ``envs[k]`` (environments of one kind, frames uint8 ``[64, 64, 3]``; extra ones
    stay unused) reset with env seed ``seeds[k]``, for at most ``max_steps`` steps (``None``: the
    environment's limit). ``patience`` > 0 ends stalled episodes early (module doc)."""
    count = len(seeds)
    if params.shape[0] != count or len(envs) < count:
        raise ValueError(
            f"{count} seeds need {count} controllers and environments, got {params.shape[0]} and {len(envs)}"
        )
    kind = envs[0]
    limit = kind.max_steps if max_steps is None else min(max_steps, kind.max_steps)
    frames = [envs[k].reset(int(seed)) for k, seed in enumerate(seeds)]
    h, c = mdn.initial_state(count)  # M's LSTM state [1, K, H]; h[0] is what C reads
    totals, idle = np.zeros(count), np.zeros(count, np.int64)
    live = np.ones(count, bool)
    for t in range(limit):
        rows = np.flatnonzero(live)  # the episodes still running, as numpy and torch indices
        if rows.size == 0:
            break
        index = torch.as_tensor(rows)
        z = vae.encode(frames_to_input(torch.as_tensor(np.stack([frames[k] for k in rows]))))[0]
        out = controller(params[index], torch.cat([z, h[0, index]], -1)[:, None])[:, 0]
        action = kind.action_map(out)
        *_, (h[:, index], c[:, index]) = mdn.step(z, action, (h[:, index], c[:, index]))
        for row, k in enumerate(rows):
            frames[k], reward, done = envs[k].step(action[row].numpy())
            totals[k] += reward
            idle[k] = idle[k] + 1 if reward <= 0 else 0
            if done:
                live[k] = False
            elif patience > 0 and idle[k] >= patience:
                live[k] = False
                steps_left = limit - (t + 1)
                totals[k] += getattr(envs[k], "stall_reward", 0.0) * steps_left
    return totals.tolist()


class _EpisodeRunner:
    """One process's share of the episodes: its V, M, C and up to ``max_envs`` environments
    (built by ``make_env()`` on first use, reused across calls); more episodes play in waves."""

    def __init__(self, make_env: Callable[[], Any], models: tuple[Any, ...], max_envs: int) -> None:
        self.make_env, self.models, self.max_envs, self.envs = make_env, models, max_envs, []

    def run(self, params: Tensor, seeds: list[int], max_steps: int | None, patience: int) -> list[float]:
        """`lockstep_returns` of ``params [K, n]`` on ``seeds [K]``, ``max_envs`` at a time."""
        returns = []
        for start in range(0, len(seeds), self.max_envs):
            wave = seeds[start : start + self.max_envs]
            while len(self.envs) < len(wave):
                self.envs.append(self.make_env())
            wave_params = params[start : start + len(wave)]
            returns += lockstep_returns(self.envs, *self.models, wave_params, wave, max_steps, patience)
        return returns

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


_RUNNER: list[_EpisodeRunner] = []  # in a worker process: its one runner, set by `_init_worker`


def _init_worker(make_env: Callable[[], Any], models: tuple[Any, ...], max_envs: int) -> None:
    torch.set_num_threads(1)  # small batches; and libgomp thread pools do not survive a fork
    runner = _EpisodeRunner(make_env, models, max_envs)
    multiprocessing.util.Finalize(runner, runner.close, exitpriority=10)  # close envs at exit
    _RUNNER.append(runner)


def _run_chunk(args: tuple[Tensor, list[int], int | None, int]) -> list[float]:
    """In a worker: ``(params [K, n], seeds [K], max_steps, patience)`` -> returns ``[K]``."""
    return _RUNNER[0].run(*args)


class RealPool:
    """Real episodes of many controllers, split over ``workers`` processes (forked, so each one
    inherits V, M and C; one torch thread each) or played in this process with ``workers=1``.
    Each process keeps at most ``max_envs`` environments and plays more episodes in waves."""

    def __init__(
        self,
        make_env: Callable[[], Any],
        vae: ConvVAE,
        mdn: MDNRNN,
        controller: LinearController,
        workers: int = 1,
        max_envs: int = 64,
    ) -> None:
        if workers < 1 or max_envs < 1:
            raise ValueError(f"workers={workers}, max_envs={max_envs}: need at least one of each")
        self.workers, models = workers, (vae, mdn, controller)
        self.local = _EpisodeRunner(make_env, models, max_envs) if workers == 1 else None
        self.pool = None
        if workers > 1:
            context = multiprocessing.get_context("fork")
            self.pool = context.Pool(workers, _init_worker, (make_env, models, max_envs))

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

    def close(self, failed: bool = False) -> None:
        """Stop the workers (at once when ``failed``: a dead worker would make ``join`` wait forever)
        and close this process's environments."""
        if self.pool is not None:
            if failed:
                self.pool.terminate()
            else:
                self.pool.close()
            self.pool.join()
        if self.local is not None:
            self.local.close()

    def __enter__(self) -> RealPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.close(failed=kind is not None)
