"""The five steps of Ha & Schmidhuber's World Models, on a CPU budget.

1. ``rollouts`` (:mod:`worldmodel.vmc.rollouts`): random rollouts in the real environment (64x64
   frames, actions, rewards, dones), or the saved ones;
2. ``train_vae``: V on all frames;
3. ``train_mdn``: M on the latent sequences (``z`` resampled from V's posterior every epoch);
4. ``evolve_controller`` (:mod:`worldmodel.vmc.dream`): C by CMA-ES inside M's dream (the
   paper's VizDoom recipe), or with ``controller_env="real"`` by CMA-ES on real returns
   (``real_fitness``; the paper's CarRacing recipe, with V and M as C's eyes and memory);
5. ``evaluate_real``: C (with V and M as its eyes and memory) in the real environment,
   against a random policy.

``run_vmc`` runs all five, times each, saves V, M and C with the atomic checkpoint
writer and returns a JSON-able summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from worldmodel.checkpoint import CheckpointError, atomic_write_json, load_checkpoint, save_checkpoint
from worldmodel.config import config_to_dict
from worldmodel.run import package_version, progress, seed_everything
from worldmodel.vmc.cmaes import Fitness, evolve
from worldmodel.vmc.controller import LinearController
from worldmodel.vmc.dream import DreamConfig, dream_returns, evolve_controller
from worldmodel.vmc.envs import ENVS, make_vmc_env
from worldmodel.vmc.mdn_rnn import MDNRNN
from worldmodel.vmc.real import RealPool, lockstep_returns
from worldmodel.vmc.rollouts import rollouts
from worldmodel.vmc.vae import ConvVAE, frames_to_input

CONTROLLER_ENVS = ("dream", "real")
EVAL_SEED_OFFSET = 10_000  # real evaluation episodes use env seeds seed + 10,000 onwards
PAPER = {
    "carracing": "906 +- 21 (Ha & Schmidhuber 2018); 860 (ctallec/world-models)",
    "take_cover": "1092 +- 556 survival steps for the dream-trained controller (750 = solved)",
}


@dataclass
class VMCConfig:
    """Sizes and budgets of one V-M-C run (paper sizes for V and M, small data budgets)."""

    env: str = "take_cover"
    seed: int = 0
    episodes: int = 40
    max_steps: int = 500
    z_dim: int = 32
    vae_epochs: int = 3
    vae_batch: int = 64
    vae_lr: float = 1e-3
    hidden: int = 256
    mixtures: int = 5
    mdn_epochs: int = 20
    mdn_seq_len: int = 100
    mdn_batch: int = 16
    mdn_lr: float = 1e-3
    done_weight: float = 10.0  # BCE weight of done steps in M's loss (the paper's restart_factor)
    eval_episodes: int = 5
    threads: int = 1
    vae_init: str = ""  # a vmc.safetensors whose V starts step 2 (vae_epochs=0: use it as is)
    vae_frames: int = 0  # V trains on this many frames drawn at random from the rollouts (0: all)
    mdn_init: str = ""  # a vmc.safetensors whose M starts step 3 (mdn_epochs=0: use it as is)
    controller_init: str = ""  # a vmc.safetensors whose C is the mean CMA-ES starts from (step 4)
    data_cache: str = ""  # an .npz of step 1's rollouts: loaded if it exists, else written there
    extra_data: str = ""  # comma-separated .npz rollouts (save_rollouts) added to step 1's for V and M
    hold_max: int = 10  # take_cover: the random policy holds each action 1 to hold_max steps
    controller_env: str = "dream"  # where CMA-ES scores C: "dream" (M) or "real" (the environment)
    workers: int = 1  # processes that play the real episodes of CMA-ES (controller_env=real)
    patience: int = 0  # real CMA-ES episodes end after this many steps without reward (0: never)
    dream: DreamConfig = field(default_factory=DreamConfig)

    def __post_init__(self) -> None:
        if self.controller_env not in CONTROLLER_ENVS:
            raise ValueError(
                f"controller_env={self.controller_env!r}: choose one of {', '.join(CONTROLLER_ENVS)}"
            )
        rollouts = (self.dream.rollouts, self.dream.eval_rollouts)
        if self.controller_env == "real" and not all(0 < r < 1_000 for r in rollouts):
            raise ValueError("real-environment CMA-ES needs 0 < rollouts, eval_rollouts < 1000")
        if self.workers < 1 or self.patience < 0:
            raise ValueError(f"need workers >= 1 and patience >= 0, got {self.workers} and {self.patience}")


def train_vae(frames: np.ndarray, cfg: VMCConfig) -> tuple[ConvVAE, list[dict[str, float]]]:
    """Step 2. ``frames [N, 64, 64, 3]`` uint8; one history row per epoch. Starts from the V
    of ``cfg.vae_init`` when given, on ``cfg.vae_frames`` of the frames drawn at random (0: all)."""
    vae = ConvVAE(cfg.z_dim)
    if cfg.vae_init:
        vae.load_state_dict(load_checkpoint(cfg.vae_init)[0]["vae"])
    optim = torch.optim.Adam(vae.parameters(), lr=cfg.vae_lr)
    data = torch.as_tensor(frames)
    if 0 < cfg.vae_frames < len(data):
        data = data[torch.randperm(len(data))[: cfg.vae_frames]]
    history = []
    for epoch in range(cfg.vae_epochs):
        order = torch.randperm(len(data))
        sums = {"vae/recon": 0.0, "vae/kl": 0.0}
        batches = range(0, len(data), cfg.vae_batch)
        for start in progress(batches, desc=f"V epoch {epoch}"):
            loss, metrics = vae.loss(frames_to_input(data[order[start : start + cfg.vae_batch]]))
            optim.zero_grad()
            loss.backward()
            optim.step()
            for k in sums:
                sums[k] += metrics[k] / len(batches)
        history.append({"epoch": epoch, **sums})
    return vae.eval(), history


@torch.no_grad()
def encode_episodes(
    vae: ConvVAE, data: list[dict[str, np.ndarray]]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(mu, logvar)``, each ``[T+1, Z]``, for every episode."""
    out = []
    for episode in data:
        frames = torch.as_tensor(episode["frames"])
        parts = [vae.encode(frames_to_input(frames[i : i + 256])) for i in range(0, len(frames), 256)]
        out.append((torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])))
    return out


def sequence_chunks(
    data: list[dict[str, np.ndarray]], latents: list[tuple[torch.Tensor, torch.Tensor]], length: int
) -> dict[str, torch.Tensor]:
    """Cut episodes into windows of ``length`` transitions, zero-padded with a ``mask``: every
    value ``[W, length, ...]`` (``mu``/``logvar`` hold ``length + 1`` frames)."""
    keys = ("mu", "logvar", "actions", "rewards", "dones", "mask")
    chunks: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for episode, (mu, logvar) in zip(data, latents, strict=True):
        steps = len(episode["actions"])
        for start in range(0, steps, length):
            stop = min(start + length, steps)
            pad = length - (stop - start)
            pieces = {
                "mu": mu[start : stop + 1],
                "logvar": logvar[start : stop + 1],
                "actions": torch.as_tensor(episode["actions"][start:stop]),
                "rewards": torch.as_tensor(episode["rewards"][start:stop]),
                "dones": torch.as_tensor(episode["dones"][start:stop]),
                "mask": torch.ones(stop - start),
            }
            for key, value in pieces.items():
                padding = torch.zeros(pad, *value.shape[1:])
                chunks[key].append(torch.cat([value, padding]))
    return {k: torch.stack(v) for k, v in chunks.items()}


def train_mdn(
    chunks: dict[str, torch.Tensor], action_dim: int, cfg: VMCConfig, mdn: MDNRNN | None = None
) -> tuple[MDNRNN, list[dict]]:
    """Step 3. ``z`` is resampled from ``N(mu, exp(logvar))`` every epoch, as in the paper. Continues
    ``mdn`` when given, else starts from the M of ``cfg.mdn_init`` (or from scratch)."""
    if mdn is None:
        mdn = MDNRNN(cfg.z_dim, action_dim, cfg.hidden, cfg.mixtures, cfg.done_weight)
        if cfg.mdn_init:
            mdn.load_state_dict(load_checkpoint(cfg.mdn_init)[0]["mdn"])
    mdn.train()
    optim = torch.optim.Adam(mdn.parameters(), lr=cfg.mdn_lr)
    history = []
    for epoch in progress(range(cfg.mdn_epochs), desc="M epochs"):
        z_all = chunks["mu"] + torch.randn_like(chunks["mu"]) * (0.5 * chunks["logvar"]).exp()
        order = torch.randperm(len(z_all))
        sums: dict[str, float] = {}
        batches = range(0, len(order), cfg.mdn_batch)
        for start in batches:
            idx = order[start : start + cfg.mdn_batch]
            z = z_all[idx]
            loss, metrics = mdn.loss(
                z[:, :-1],
                chunks["actions"][idx],
                z[:, 1:],
                chunks["rewards"][idx],
                chunks["dones"][idx],
                chunks["mask"][idx],
            )
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(mdn.parameters(), 1.0)
            optim.step()
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v / len(batches)
        history.append({"epoch": epoch, **sums})
    return mdn.eval(), history


def evaluate_real(
    env: Any,
    vae: ConvVAE,
    mdn: MDNRNN,
    controller: LinearController,
    params: torch.Tensor | None,
    episodes: int,
    seed: int,
    max_steps: int | None = None,
    pool: RealPool | None = None,
) -> list[float]:
    """Step 5. Real returns of the controller ``params [n]`` (``None``: uniformly random
    controller outputs, the random-policy baseline), one episode per seed ``seed + i``, each
    of at most ``max_steps`` steps (``None``: the environment's limit). With a ``pool``, C's
    episodes play in lockstep on its processes instead of one at a time in ``env``."""
    seeds = [seed + ep for ep in range(episodes)]
    if params is not None and pool is not None:
        return pool.returns(params.expand(episodes, -1), seeds, max_steps)
    if params is not None:
        models = (vae, mdn, controller, params[None])
        return [lockstep_returns([env], *models, [s], max_steps)[0] for s in seeds]
    rng = np.random.default_rng(seed)
    returns = []
    for episode_seed in seeds:  # the random policy needs neither V nor M
        env.reset(episode_seed)
        total = 0.0
        for _ in range(env.max_steps if max_steps is None else min(max_steps, env.max_steps)):
            action = env.action_map(torch.as_tensor(rng.uniform(-1, 1, (1, controller.out_dim))).float())
            _, reward, done = env.step(action[0].numpy())
            total += reward
            if done:
                break
        returns.append(total)
    return returns


def saved_controller(path: str | Path) -> np.ndarray:
    """C's parameters ``[n]`` from a run's ``vmc.safetensors`` (`CheckpointError` if it has none)."""
    state = load_checkpoint(path)[0]
    if "controller" not in state:
        raise CheckpointError(f"{path} holds no controller C to start CMA-ES from")
    return state["controller"].float().reshape(-1).numpy()


def env_factory(cfg: VMCConfig, env: Any) -> Callable[[], Any]:
    """What builds more environments like ``env``: `make_vmc_env` for the paper's two, else
    ``env``'s class called without arguments (a user's own environment)."""
    return partial(make_vmc_env, cfg.env, cfg.hold_max) if cfg.env in ENVS else type(env)


def real_fitness(pool: RealPool, cfg: VMCConfig, dream_cfg: Any) -> Fitness:
    """CMA-ES fitness in the real environment: candidate ``p`` of ``params [P, n]`` gets its mean
    return over ``rollouts`` (< 1,000, checked by `VMCConfig`) episodes of at most
    ``dream_cfg.horizon`` steps (training sees shorter episodes than the evaluation's full ones
    when the horizon is below the env's limit), all played by ``pool`` in lockstep, stalled ones
    cut after ``cfg.patience`` steps. A generation's candidates share its episode seeds
    (common random numbers): blocks of 1,000 from ``1,000,000 * (1 + cfg.seed + dream_cfg.seed)``
    on, apart from the rollout and evaluation seeds (iterative training's searches differ in
    ``dream_cfg.seed``)."""
    calls = iter(range(1_000_000 * (1 + cfg.seed + dream_cfg.seed), 2**31, 1_000))

    def fitness(params: torch.Tensor, rollouts: int) -> torch.Tensor:
        first = next(calls)
        seeds = [first + r for r in range(rollouts)] * len(params)  # candidate-major, as below
        episodes = params.repeat_interleave(rollouts, 0)
        returns = pool.returns(episodes, seeds, dream_cfg.horizon, cfg.patience)
        return torch.tensor(returns, dtype=torch.float32).reshape(len(params), rollouts).mean(1)

    return fitness


def evolve_c(
    env: Any,
    vae: ConvVAE,
    mdn: MDNRNN,
    controller: LinearController,
    start_z: Tensor,
    cfg: VMCConfig,
    dream_cfg: Any,
    x0: np.ndarray | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """Step 4: C's parameters ``[n]`` by CMA-ES (from ``x0``, default zeros) scored in M's dream or,
    with ``controller_env=real``, on real returns; and the summary of the search."""
    if cfg.controller_env == "real":
        with RealPool(env_factory(cfg, env), vae, mdn, controller, cfg.workers) as pool:
            fitness = real_fitness(pool, cfg, dream_cfg)
            found, history = evolve(controller.num_params, fitness, dream_cfg, "CMA-ES in the real env", x0)
    else:
        found, history = evolve_controller(mdn, controller, start_z, env.action_map, dream_cfg, x0)
    summary = {  # returns where C was scored: M's dream or the real environment
        "scored_in": cfg.controller_env,
        "first_generation_mean": history[0]["mean"],
        "last_generation_mean": history[-1]["mean"],
        "evaluated_means": [h["evaluated"] for h in history if "evaluated" in h],
    }
    return torch.as_tensor(found, dtype=torch.float32), summary


def return_stats(values: list[float]) -> dict[str, float]:
    """Mean, population std and count of episode returns (the summaries' ``*_return`` entries)."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def run_vmc(cfg: VMCConfig, logdir: str | Path, env: Any = None) -> dict[str, Any]:
    """All five steps; writes ``vmc.safetensors`` (V, M, C) and ``summary.json`` to ``logdir``.

    ``env`` defaults to ``make_vmc_env(cfg.env)`` (any object with the same interface works).
    """
    logdir = Path(logdir)
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    env = env or make_vmc_env(cfg.env, cfg.hold_max)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 1)
        clock = now

    try:
        data = rollouts(env, cfg)
        lap("1_random_rollouts")
        vae, vae_history = train_vae(np.concatenate([ep["frames"] for ep in data]), cfg)
        lap("2_train_V")
        latents = encode_episodes(vae, data)
        mdn, mdn_history = train_mdn(sequence_chunks(data, latents, cfg.mdn_seq_len), env.action_dim, cfg)
        lap("3_train_M")
        controller = LinearController(cfg.z_dim + cfg.hidden, env.controller_dim)
        start_z = torch.stack([mu[0] for mu, _ in latents])
        x0 = saved_controller(cfg.controller_init) if cfg.controller_init else None
        params, cmaes = evolve_c(env, vae, mdn, controller, start_z, cfg, cfg.dream, x0)
        dream = (start_z, env.action_map, cfg.dream.horizon, cfg.dream.tau, cfg.dream.done, cfg.dream.lives)
        final_dream = dream_returns(mdn, controller, params[None], *dream)
        zero_dream = dream_returns(mdn, controller, torch.zeros(1, controller.num_params), *dream)
        lap(f"4_evolve_C_in_{cfg.controller_env}")
        save_checkpoint(
            logdir / "vmc.safetensors",
            {"vae": vae.state_dict(), "mdn": mdn.state_dict(), "controller": params},
            meta={"config": config_to_dict(cfg)},
        )
        episodes = (cfg.eval_episodes, cfg.seed + EVAL_SEED_OFFSET)
        pool = RealPool(env_factory(cfg, env), vae, mdn, controller, cfg.workers) if cfg.workers > 1 else None
        with pool or nullcontext():
            real = evaluate_real(env, vae, mdn, controller, params, *episodes, pool=pool)
        random = evaluate_real(env, vae, mdn, controller, None, *episodes)
        lap("5_transfer_to_real")
    finally:
        env.close()
    summary = {
        "env": cfg.env,
        "version": package_version(),
        "config": config_to_dict(cfg),
        "data": {
            "episodes": len(data),
            "frames": int(sum(len(ep["frames"]) for ep in data)),
            "random_rollout_return": return_stats([float(ep["rewards"].sum()) for ep in data]),
        },
        "seconds": {**seconds, "total": round(sum(seconds.values()), 1)},
        "threads": cfg.threads,
        "vae": vae_history[-1] if vae_history else {"loaded": cfg.vae_init},
        "mdn": mdn_history[-1] if mdn_history else {"loaded": cfg.mdn_init},
        "dream_return": {"controller": float(final_dream[0]), "zero_controller": float(zero_dream[0])},
        "cmaes": cmaes,
        "real_return": {"controller": return_stats(real), "random_policy": return_stats(random)},
        "paper": PAPER.get(cfg.env, ""),
    }
    atomic_write_json(logdir / "summary.json", summary)
    return summary
