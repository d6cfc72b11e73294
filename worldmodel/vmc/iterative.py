"""Ha & Schmidhuber's iterative training procedure, from a finished V-M-C run.

The paper (section "Iterative Training Procedure"; ctallec/world-models does the same) repeats:
roll out the current controller in the real environment, add those episodes to M's data,
retrain M, retrain C in M's dream. Here, from the V, M and C of a run's ``vmc.safetensors``
(and its rollouts: the run's ``data_cache`` and ``extra_data`` files), each of ``iterations``:

1. collect ``iter_episodes`` real episodes with C acting on V's ``z`` and M's ``h``, with
   exploration (see `collect_on_policy`), saved as ``iter<k>.npz`` (`save_rollouts` format,
   so a later run can list them in ``extra_data``);
2. retrain M, continuing from the current M, for ``iter_mdn_epochs`` epochs on all the data so
   far (V stays fixed: the new episodes are only encoded);
3. re-evolve C by CMA-ES in the new M's dream (or on real returns with ``controller_env=real``),
   warm-started at the current C (the search starts at its parameters, step ``dream.sigma0``);
4. evaluate C (with the new M) in the real environment on the run's evaluation seeds.

Iteration 0 is the source run's M and C, evaluated the same way. C reads M's ``h``, so the best
iteration by mean real return keeps its (M, C) pair: ``vmc.safetensors`` holds V with the best
pair, ``last.safetensors`` the last iteration's; both carry a config whose ``extra_data`` lists the
new rollout files, so ``--from`` the new logdir continues with all the data.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from worldmodel.checkpoint import CheckpointError, atomic_write_json, save_checkpoint
from worldmodel.config import config_to_dict
from worldmodel.run import package_version, progress, seed_everything
from worldmodel.vmc.controller import LinearController
from worldmodel.vmc.dream import dream_returns
from worldmodel.vmc.envs import make_vmc_env
from worldmodel.vmc.evaluate import build_run, load_source
from worldmodel.vmc.mdn_rnn import MDNRNN
from worldmodel.vmc.pipeline import (
    EVAL_SEED_OFFSET,
    PAPER,
    VMCConfig,
    encode_episodes,
    evaluate_real,
    evolve_c,
    return_stats,
    sequence_chunks,
    train_mdn,
)
from worldmodel.vmc.rollouts import record_episode, rollouts, save_rollouts
from worldmodel.vmc.vae import ConvVAE, frames_to_input

EXPLORATION = (
    "C's tanh outputs plus N(0, iter_noise^2) noise, clipped to [-1, 1]; and at each step not "
    "already in a random segment, with probability iter_explore, the env's random action held for "
    "1 to hold_max steps (C is not consulted during it; M's h still follows the actions taken)"
)


@dataclass
class IterateConfig:
    """Budgets of the iterative procedure (everything else is the source run's `VMCConfig`)."""

    iterations: int = 3
    iter_episodes: int = 100  # on-policy real episodes collected per iteration
    iter_mdn_epochs: int = 3  # M epochs per iteration, continuing from the current M
    iter_noise: float = 0.1  # std of the Gaussian noise on C's outputs while collecting
    iter_explore: float = 0.02  # per-step probability of starting a random held action

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.iter_episodes < 1 or self.iter_mdn_epochs < 0:
            raise ValueError("need iterations >= 0, iter_episodes >= 1 and iter_mdn_epochs >= 0")
        if self.iter_noise < 0 or not 0 <= self.iter_explore <= 1:
            raise ValueError("need iter_noise >= 0 and 0 <= iter_explore <= 1")


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """``key=value`` items -> (those of `IterateConfig`, the rest: `VMCConfig` overrides)."""
    own = {f.name for f in fields(IterateConfig)}
    mine = [o for o in overrides if o.split("=", 1)[0].strip().lstrip("-") in own]
    return mine, [o for o in overrides if o not in mine]


@dataclass
class Best:
    """The best (M, C) pair so far by mean real return; a tie keeps the earlier iteration."""

    iteration: int = -1
    real_mean: float = -float("inf")
    mdn: dict[str, Tensor] | None = None
    params: Tensor | None = None

    def update(self, iteration: int, real_mean: float, mdn: dict[str, Tensor], params: Tensor) -> bool:
        """Keep copies of ``mdn`` (a state dict) and ``params [n]`` if ``real_mean`` beats the best."""
        if real_mean <= self.real_mean:
            return False
        self.iteration, self.real_mean = iteration, float(real_mean)
        self.mdn = {k: v.detach().clone() for k, v in mdn.items()}
        self.params = params.detach().clone()
        return True


def _source_data(env: Any, cfg: VMCConfig, path: Path) -> list[dict[str, np.ndarray]]:
    """The source run's rollouts (`rollouts`), refusing to re-collect a missing ``data_cache``."""
    files = [f for f in [cfg.data_cache, *cfg.extra_data.split(",")] if f]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise CheckpointError(f"rollouts of {path} missing: {', '.join(missing)}")
    try:
        return rollouts(env, cfg)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"rollouts of {path} unreadable: {err}") from None


@torch.no_grad()
def collect_on_policy(
    env: Any,
    vae: ConvVAE,
    mdn: MDNRNN,
    controller: LinearController,
    params: Tensor,
    episodes: int,
    max_steps: int,
    seed: int,
    noise: float = 0.0,
    explore: float = 0.0,
    hold_max: int = 10,
) -> list[dict[str, np.ndarray]]:
    """Real episodes of C (``params [n]``) on V's ``z`` and M's ``h``, with exploration (see
    ``EXPLORATION``), in `collect`'s format: ``frames [T+1, 64, 64, 3]``, ``actions [T, A]`` (the
    actions taken), ``rewards [T]``, ``dones [T]``; episode ``i`` on env seed ``seed + i``."""
    rng = np.random.default_rng(seed)
    data = []
    for ep in progress(range(episodes), desc="on-policy rollouts"):
        state, h = mdn.initial_state(1), torch.zeros(1, mdn.hidden)
        held, random_action = 0, None

        def policy(frame: np.ndarray) -> np.ndarray:
            nonlocal state, h, held, random_action
            z = vae.encode(frames_to_input(torch.as_tensor(frame)))[0]
            if held == 0 and rng.random() < explore:
                held = int(rng.integers(1, hold_max + 1))
                random_action = torch.as_tensor(env.random_action(rng, None), dtype=torch.float32)[None]
            if held > 0:
                held -= 1
                action = random_action
            else:
                out = controller(params[None], torch.cat([z, h], -1)[None])[0]
                jitter = torch.as_tensor(rng.standard_normal(out.shape), dtype=out.dtype)
                action = env.action_map((out + noise * jitter).clamp(-1.0, 1.0))
            _, _, _, h, state = mdn.step(z, action, state)
            return action[0].numpy()

        data.append(record_episode(env, seed + ep, max_steps, policy))
    return data


def _without_frames(data: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """M trains on V's latents: once encoded, episodes keep only ``actions``, ``rewards``, ``dones``."""
    return [{k: ep[k] for k in ("actions", "rewards", "dones")} for ep in data]


def iterate_vmc(
    source: str | Path,
    logdir: str | Path,
    icfg: IterateConfig,
    overrides: Sequence[str] = (),
    env: Any = None,
    command: str = "",
) -> dict[str, Any]:
    """Run the iterative procedure from the run at ``source`` (``overrides``: `VMCConfig`
    ``key=value`` updates of its config, e.g. ``dream.generations``, ``eval_episodes``). Writes
    ``iter<k>.npz``, ``vmc.safetensors`` (best), ``last.safetensors`` and ``summary.json`` (after
    every iteration, with ``command``, so a stopped run keeps it) to ``logdir``; returns the summary.
    ``env`` defaults to ``make_vmc_env``."""
    logdir = Path(logdir)
    cfg, state, path = load_source(source, overrides)
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    env = env or make_vmc_env(cfg.env, cfg.hold_max)
    clock = time.perf_counter()
    try:
        run = build_run(cfg, state, path, env)
        vae, mdn, controller, params = run.vae, run.mdn, run.controller, run.params
        data = _source_data(env, cfg, path)
        latents = encode_episodes(vae, data)
        source_frames = sum(len(ep["frames"]) for ep in data)
        data = _without_frames(data)
        source_episodes = len(data)
        extra = [f for f in cfg.extra_data.split(",") if f]
        best, rows = Best(), []
        summary: dict[str, Any] = {
            "command": command,
            "env": cfg.env,
            "version": package_version(),
            "source": str(path),
            "config": config_to_dict(cfg),
            "iterate": config_to_dict(icfg),
            "exploration": EXPLORATION,
            "threads": cfg.threads,
            "iterations": rows,
            "paper": PAPER.get(cfg.env, ""),
        }
        seconds = {"load_and_encode": round(time.perf_counter() - clock, 1)}
        for k in range(icfg.iterations + 1):
            lap = time.perf_counter()
            row: dict[str, Any] = {"iteration": k, "seconds": {}}

            def tick(name: str, row: dict[str, Any] = row) -> None:
                nonlocal lap
                now = time.perf_counter()
                row["seconds"][name] = round(now - lap, 1)
                lap = now

            if k > 0:  # 1. on-policy episodes
                seed = cfg.seed + 100_000 * k  # apart from the rollout, evaluation and real-fitness seeds
                explore = (icfg.iter_noise, icfg.iter_explore, cfg.hold_max)
                new = collect_on_policy(
                    env, vae, mdn, controller, params, icfg.iter_episodes, cfg.max_steps, seed, *explore
                )
                npz = logdir / f"iter{k}.npz"
                meta = {"env": cfg.env, "seed": seed, "max_steps": cfg.max_steps, "hold_max": cfg.hold_max}
                policy = {"noise": icfg.iter_noise, "explore": icfg.iter_explore, "source": str(path)}
                save_rollouts(npz, new, {**meta, "policy": "controller", "iteration": k, **policy})
                extra.append(str(npz))
                row["rollouts"] = str(npz)
                row["episodes_added"] = len(new)
                row["frames_added"] = int(sum(len(ep["frames"]) for ep in new))
                row["on_policy_return"] = return_stats([float(ep["rewards"].sum()) for ep in new])
                latents += encode_episodes(vae, new)
                data += _without_frames(new)
                tick("1_collect")
                # 2. M continues on all data so far
                chunks = sequence_chunks(data, latents, cfg.mdn_seq_len)
                mdn, history = train_mdn(
                    chunks, env.action_dim, replace(cfg, mdn_epochs=icfg.iter_mdn_epochs), mdn
                )
                row["mdn"] = history[-1] if history else {}
                row["m_data"] = {"episodes": len(data), "transitions": int(chunks["mask"].sum())}
                del chunks
                tick("2_train_M")
            start_z = torch.stack([mu[0] for mu, _ in latents])
            if k > 0:  # 3. C re-evolved from the current C
                dream_cfg = replace(cfg.dream, seed=cfg.dream.seed + k)
                params, row["cmaes"] = evolve_c(
                    env, vae, mdn, controller, start_z, cfg, dream_cfg, params.numpy()
                )
                tick("3_evolve_C")
            d = cfg.dream
            dream = dream_returns(
                mdn, controller, params[None], start_z, env.action_map, d.horizon, d.tau, d.done, d.lives
            )
            row["dream_return"] = float(dream[0])
            # run_vmc's evaluation seeds: comparable with the source summary
            real = evaluate_real(
                env, vae, mdn, controller, params, cfg.eval_episodes, cfg.seed + EVAL_SEED_OFFSET
            )
            row["real_return"] = return_stats(real)
            row["best_so_far"] = best.update(k, row["real_return"]["mean"], mdn.state_dict(), params)
            tick("4_eval")
            row["seconds"]["total"] = round(sum(row["seconds"].values()), 1)
            rows.append(row)
            saved = replace(cfg, extra_data=",".join(extra), mdn_init=str(path), mdn_epochs=0, vae_epochs=0)
            about = {"config": config_to_dict(saved), "iterative": {"source": str(path)}}
            last = {"vae": vae.state_dict(), "mdn": mdn.state_dict(), "controller": params}
            save_checkpoint(logdir / "last.safetensors", last, {**about, "iteration": k})
            if row["best_so_far"]:
                kept = {"vae": vae.state_dict(), "mdn": best.mdn, "controller": best.params}
                save_checkpoint(logdir / "vmc.safetensors", kept, {**about, "iteration": k})
            summary["data"] = {
                "source_episodes": source_episodes,
                "source_frames": source_frames,
                "episodes": len(data),
                "frames": source_frames + sum(r.get("frames_added", 0) for r in rows),
            }
            summary["best"] = {
                "iteration": best.iteration,
                "real_return": rows[best.iteration]["real_return"],
            }
            seconds["total"] = round(time.perf_counter() - clock, 1)
            summary["seconds"] = seconds
            atomic_write_json(logdir / "summary.json", summary)
    finally:
        env.close()
    return summary
