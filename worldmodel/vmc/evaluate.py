"""A saved V-M-C run: load its V, M and C, and evaluate C on held-out real episodes.

A run's ``summary.json`` reports C on the evaluation seeds ``seed + EVAL_SEED_OFFSET`` onwards, and
`worldmodel.vmc.iterative` keeps the iteration that scores best there; that choice makes those seeds
part of the selection. ``evaluate_run`` plays C and the random policy on ``seed +
HELDOUT_SEED_OFFSET`` onwards, seeds no step of the pipeline uses, for an unbiased number.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from worldmodel.checkpoint import CheckpointError, load_checkpoint
from worldmodel.config import config_to_dict, resolve_config
from worldmodel.run import package_version
from worldmodel.vmc.controller import LinearController
from worldmodel.vmc.envs import make_vmc_env
from worldmodel.vmc.mdn_rnn import MDNRNN
from worldmodel.vmc.pipeline import PAPER, VMCConfig, evaluate_real, return_stats
from worldmodel.vmc.vae import ConvVAE

HELDOUT_SEED_OFFSET = 20_000  # random rollouts use seeds < 3,000, evaluation 10,000+, on-policy 100,000+


def load_source(source: str | Path, overrides: Sequence[str] = ()) -> tuple[VMCConfig, dict[str, Any], Path]:
    """``(config, state, path)`` of a run's ``vmc.safetensors`` (``source``: the logdir or the file);
    ``overrides`` (``key=value``) update the saved config. Raises `CheckpointError` (one message)
    for a missing or corrupt checkpoint, or one without V, M, C and its config."""
    path = Path(source)
    path = path / "vmc.safetensors" if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(
            f"no V-M-C run at {source}: expected a logdir with vmc.safetensors, or the file"
        )
    state, meta = load_checkpoint(path)
    if not {"vae", "mdn", "controller"} <= state.keys() or "config" not in meta:
        raise CheckpointError(f"{path} is not a V-M-C checkpoint (needs V, M, C and the run's config)")
    return resolve_config(VMCConfig, overrides, preset=meta["config"]), state, path


@dataclass
class Run:
    """A loaded run: its config, V and M (in eval mode), C's module and parameters ``[n]``."""

    cfg: VMCConfig
    path: Path
    vae: ConvVAE
    mdn: MDNRNN
    controller: LinearController
    params: Tensor


def build_run(cfg: VMCConfig, state: dict[str, Any], path: Path, env: Any) -> Run:
    """V, M and C of a `load_source` result, built for ``env``'s action sizes with the saved weights;
    weights that do not fit the config raise `CheckpointError`."""
    vae = ConvVAE(cfg.z_dim)
    mdn = MDNRNN(cfg.z_dim, env.action_dim, cfg.hidden, cfg.mixtures, cfg.done_weight)
    controller = LinearController(cfg.z_dim + cfg.hidden, env.controller_dim)
    try:
        vae.load_state_dict(state["vae"])
        mdn.load_state_dict(state["mdn"])
        params = state["controller"].float().reshape(-1)
        controller.unpack(params[None])  # checks the size
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path} does not fit its config: {err}") from None
    vae.eval()
    mdn.eval()
    return Run(cfg, path, vae, mdn, controller, params)


def mean_ci(values: Sequence[float], resamples: int = 10_000, seed: int = 0) -> list[float]:
    """Percentile bootstrap 95% confidence interval ``[lo, hi]`` of the mean of ``values``."""
    x = np.asarray(values, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))
    return [float(v) for v in np.percentile(x[idx].mean(1), [2.5, 97.5])]


@torch.no_grad()
def evaluate_run(
    source: str | Path, episodes: int, seed_offset: int = HELDOUT_SEED_OFFSET, env: Any = None
) -> dict[str, Any]:
    """Real returns of the run's C and of the random policy on the same ``episodes`` env seeds,
    ``seed + seed_offset`` onwards (``seed``: the run's), with bootstrap 95% CIs of C's mean and
    of the paired difference; a JSON-able summary."""
    if episodes < 1:
        raise ValueError("need episodes >= 1")
    clock = time.perf_counter()
    cfg, state, path = load_source(source)
    own_env = env is None
    env = make_vmc_env(cfg.env, cfg.hold_max) if own_env else env
    try:
        run = build_run(cfg, state, path, env)
        torch.set_num_threads(cfg.threads)
        seeds = (episodes, cfg.seed + seed_offset)
        models = (env, run.vae, run.mdn, run.controller)
        controller = evaluate_real(*models, run.params, *seeds)
        random = evaluate_real(*models, None, *seeds)
        diff = [c - r for c, r in zip(controller, random, strict=True)]  # paired: same env seed
    finally:
        if own_env:
            env.close()
    return {
        "env": run.cfg.env,
        "version": package_version(),
        "source": str(run.path),
        "config": config_to_dict(run.cfg),
        "seeds": {"first": seeds[1], "count": episodes},
        "real_return": return_stats(controller),
        "random_policy": return_stats(random),
        "ci95": {"controller": mean_ci(controller), "controller_minus_random": mean_ci(diff)},
        "returns": {"controller": controller, "random_policy": random},
        "paper": PAPER.get(run.cfg.env, ""),
        "seconds": round(time.perf_counter() - clock, 1),
    }
