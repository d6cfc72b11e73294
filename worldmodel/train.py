"""The training runner: one straight-line loop (CleanRL style) over env steps.

    worldmodel train --env gym:CartPole-v1 --size xs --steps 10000 --train-ratio 64 \
        --logdir runs/cartpole --seed 0 model.deter=128

Per iteration: store the current rows in replay (with the action that led to them),
pick actions (uniformly random during ``prefill``, then the agent's policy), step the
environments, and run as many agent updates as the train ratio has earned
(``train_ratio`` replayed steps per env step, i.e. ``train_ratio / (batch_size *
batch_length)`` updates per env step). The logdir gets ``config.json``,
``metrics.jsonl``, TensorBoard events, ``checkpoints/latest.safetensors`` (agent and
optimisers, RNG states, counters) and ``replay/`` (the memory-mapped buffer).

Running the same command again on the same logdir resumes from the last checkpoint
(a different config raises a `CheckpointError` naming the keys); the environments
start new episodes on resume, since simulator states cannot be saved in general.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel.checkpoint import check_config_compatible, load_checkpoint, save_checkpoint
from worldmodel.config import ConfigError, config_from_dict, config_to_dict, resolve_config
from worldmodel.envs import EnvBatch
from worldmodel.presets import DreamerConfig, dreamer_config
from worldmodel.run import (
    RunDir,
    keep_freed_memory,
    package_version,
    progress,
    rng_state,
    seed_everything,
    set_rng_state,
)

CHECKPOINT = "checkpoints/latest.safetensors"
# Settings that may change between a run and its resumption: they change no state or shape (the run
# settings change no result; agent.precision changes only the rounding of the update's matmuls).
RESUMABLE_KEYS = (
    "run.steps", "run.log_every", "run.checkpoint_every", "run.parallel", "run.threads", "run.eval_",
    "run.keep_memory", "run.keep_checkpoints", "agent.precision",
)
EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes never reuse a training seed


@dataclass
class RunConfig:
    """Settings of one training run (the agent's own settings live in `DreamerConfig`)."""

    env: str = "gym:CartPole-v1"
    size: str = "xs"  # agent preset, see worldmodel.presets.PRESETS
    steps: int = 10_000  # total env steps (summed over parallel envs)
    seed: int = 0
    num_envs: int = 1
    parallel: bool = False  # one subprocess per env (gymnasium AsyncVectorEnv)
    prefill: int = 1_000  # env steps with uniformly random actions before learning starts
    replay_size: int = 1_000_000
    log_every: int = 1_000  # env steps between metrics rows
    checkpoint_every: int = 10_000  # env steps between checkpoints (and one at the end)
    keep_checkpoints: bool = False  # also keep each as checkpoints/step_<N>.safetensors (eval --checkpoint)
    eval_every: int = 0  # env steps between greedy evaluations logged as eval/return (0 = off)
    eval_episodes: int = 5
    pixels: bool = False  # dmc: 64x64 images instead of proprioception
    action_repeat: int = 0  # 0 = the suite's default
    time_limit: int = 0  # 0 = the suite's default
    life_loss: bool = False  # atari: a lost life ends the episode
    threads: int = 1  # torch intra-op threads
    keep_memory: bool = True  # malloc keeps freed memory for reuse (worldmodel.run.keep_freed_memory)


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """``["run.num_envs=4", "model.deter=64"]`` -> (run overrides, agent overrides)."""
    run = [o.split(".", 1)[1] for o in overrides if o.lstrip("-").startswith("run.")]
    agent = [o for o in overrides if not o.lstrip("-").startswith("run.")]
    return run, agent


def build_configs(overrides: Sequence[str] = (), **run_fields: Any) -> tuple[RunConfig, DreamerConfig]:
    """A `RunConfig` (fields given directly or as ``run.key=value``) and the agent config.

    ``train_ratio`` and ``seed`` given here are applied to the agent config as well.
    """
    run_over, agent_over = split_overrides(overrides)
    train_ratio = run_fields.pop("train_ratio", None)
    given = {k: v for k, v in run_fields.items() if v is not None}
    run_cfg = resolve_config(RunConfig, run_over, preset=given)
    agent_over = [f"seed={run_cfg.seed}", *agent_over]
    if train_ratio is not None:
        agent_over.insert(0, f"train_ratio={train_ratio}")
    agent_cfg = dreamer_config(run_cfg.size, agent_over)
    if run_cfg.steps < 1 or run_cfg.num_envs < 1 or agent_cfg.train_ratio <= 0:
        raise ConfigError("steps and num_envs must be >= 1 and train_ratio > 0")
    if run_cfg.prefill < agent_cfg.batch_length * run_cfg.num_envs:
        raise ConfigError(
            f"run.prefill={run_cfg.prefill} must be at least batch_length * num_envs = "
            f"{agent_cfg.batch_length * run_cfg.num_envs} so that replay can sample sequences"
        )
    return run_cfg, agent_cfg


def full_config(run_cfg: RunConfig, agent_cfg: DreamerConfig) -> dict[str, Any]:
    """The JSON-able config saved with a run (and compared on resume)."""
    return {"version": package_version(), "run": config_to_dict(run_cfg), "agent": config_to_dict(agent_cfg)}


def load_run_configs(logdir: str | Path) -> tuple[RunConfig, DreamerConfig]:
    """The configs of an existing run directory (from its config.json)."""
    path = Path(logdir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{logdir} is not a run directory: no config.json")
    data = json.loads(path.read_text())
    return config_from_dict(RunConfig, data["run"]), config_from_dict(DreamerConfig, data["agent"])


def make_envs(
    run_cfg: RunConfig, num_envs: int | None = None, seed: int | None = None, render: bool = False
) -> EnvBatch:
    """The `EnvBatch` a run config describes (``render``: gym envs draw frames for videos)."""
    kwargs: dict[str, Any] = {"pixels": run_cfg.pixels, "render": render, "life_loss": run_cfg.life_loss}
    if run_cfg.action_repeat:
        kwargs["action_repeat"] = run_cfg.action_repeat
    if run_cfg.time_limit:
        kwargs["time_limit"] = run_cfg.time_limit
    return EnvBatch(
        run_cfg.env,
        num_envs=num_envs or run_cfg.num_envs,
        seed=run_cfg.seed if seed is None else seed,
        parallel=run_cfg.parallel,
        **kwargs,
    )


def obs_shapes(envs: EnvBatch) -> dict[str, tuple[int, ...]]:
    """The observation shapes an `Agent` is built for, e.g. ``{"vector": (4,)}``."""
    return {key: tuple(space.shape) for key, space in envs.observation_space.spaces.items()}


def to_torch(row: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Numpy rows ``[N, ...]`` -> tensors ``[N, ...]`` (bools stay bool)."""
    return {k: torch.as_tensor(v) for k, v in row.items()}


def random_actions(envs: EnvBatch) -> np.ndarray:
    """Uniform random actions ``[N, A]`` (one-hot rows or values in [-1, 1]) from numpy's global RNG."""
    if envs.discrete:
        index = np.random.randint(envs.action_size, size=envs.num_envs)
        return np.eye(envs.action_size, dtype=np.float32)[index]
    return np.random.uniform(-1.0, 1.0, (envs.num_envs, envs.action_size)).astype(np.float32)


def play_episodes(
    agent: Any, envs: EnvBatch, episodes: int, act: Any = None, record: Any = None
) -> list[dict[str, float]]:
    """Play ``episodes`` full episodes (greedy policy unless ``act`` is given); their stats.

    ``act(obs: dict[str, Tensor[N, ...]], state) -> (action [N, A], state)``;
    ``record(row)`` (optional) sees every row before the agent acts on it.
    """
    if act is None:
        def act(obs: dict[str, torch.Tensor], state: Any) -> tuple[torch.Tensor, Any]:
            return agent.policy(obs, state, mode="greedy")

    row, state, done = envs.reset(), agent.initial_state(envs.num_envs), []
    while len(done) < episodes:
        if record is not None:
            record(row)
        with torch.no_grad():
            action, state = act(to_torch(row), state)
        row = envs.step(action.numpy().astype(np.float32))
        done += envs.episodes
    return done[:episodes]


class _Meter:
    """Averages of the agent's update metrics and rates since the last log (or since the run
    started or resumed at ``env_steps`` and ``updates``)."""

    def __init__(self, env_steps: int = 0, updates: int = 0) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.time, self.env_steps, self.updates = time.perf_counter(), env_steps, updates

    def add(self, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            value = float(value.detach().float().mean()) if isinstance(value, torch.Tensor) else float(value)
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def flush(self, env_steps: int, updates: int) -> dict[str, float]:
        now = time.perf_counter()
        elapsed = max(now - self.time, 1e-9)
        row = {k: v / self.count for k, v in self.sums.items()} if self.count else {}
        row["fps"] = (env_steps - self.env_steps) / elapsed
        row["updates_per_s"] = (updates - self.updates) / elapsed
        row["updates"] = updates
        self.__init__(env_steps, updates)
        return row


def _restore(logdir: Path, config: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The saved state of a run to resume (None for a new run) and its counters."""
    counters: dict[str, Any] = {
        "env_steps": 0, "updates": 0, "episodes": 0, "credit": 0.0, "last_return": 0.0,
    }
    if not (logdir / CHECKPOINT).is_file():
        return None, counters
    state, meta = load_checkpoint(logdir / CHECKPOINT)
    check_config_compatible(saved_config(meta), config, ignore=RESUMABLE_KEYS)
    return state, {**counters, **state["counters"]}


def keep_copy(latest: Path, env_steps: int) -> Path:
    """Keep the checkpoint just written as ``step_<env_steps>.safetensors`` beside it: a hard link
    (the next checkpoint replaces ``latest`` by a rename, so the link keeps this one), else a copy."""
    kept = latest.with_name(f"step_{env_steps}.safetensors")
    kept.unlink(missing_ok=True)
    try:
        os.link(latest, kept)
    except OSError:
        shutil.copyfile(latest, kept)
    return kept


def saved_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The full config a checkpoint was written with (its ``meta``), with the defaults of
    settings added after it was written."""
    saved = dict(meta.get("config", {}))
    saved["run"] = {**config_to_dict(RunConfig()), **saved.get("run", {})}
    saved["agent"] = {"precision": "float32", **saved.get("agent", {})}  # added after the first runs
    return saved


def train(run_cfg: RunConfig, agent_cfg: DreamerConfig, logdir: str | Path) -> dict[str, Any]:
    """Train (or resume) a run; returns the counters (env steps, updates, episodes, last return).

    With ``run.keep_memory`` (the default) it first tells glibc's malloc to keep freed memory
    for the rest of the process (`worldmodel.run.keep_freed_memory`).
    """
    from worldmodel.agent import Agent
    from worldmodel.replay import Replay

    logdir = Path(logdir)
    config = full_config(run_cfg, agent_cfg)
    saved, counters = _restore(logdir, config)
    torch.set_num_threads(run_cfg.threads)
    if run_cfg.keep_memory:
        keep_freed_memory()
    seed_everything(run_cfg.seed)
    # A resumed run starts new episodes with fresh seeds; its first rows are is_first.
    envs = make_envs(run_cfg, seed=run_cfg.seed + counters["env_steps"])
    agent = Agent(obs_shapes(envs), envs.action_space, agent_cfg)
    if saved is not None:
        agent.load_state_dict(saved["agent"])
        replay = Replay.load(logdir / "replay")
        # The checkpoint is the commit point: rows written after it (a kill between the
        # replay flush and the checkpoint) are dropped, and sampling continues as saved.
        replay.count = np.asarray(saved["replay"]["count"], dtype=np.int64)
        replay.rng.bit_generator.state = saved["replay"]["rng"]
        set_rng_state(saved["rng"])
    else:
        replay = Replay(logdir / "replay", run_cfg.replay_size, workers=envs.num_envs, seed=run_cfg.seed)
    updates_per_step = agent_cfg.train_ratio / (agent_cfg.batch_size * agent_cfg.batch_length)
    meter = _Meter(counters["env_steps"], counters["updates"])  # a resumed run's rates start here
    n = envs.num_envs

    def checkpoint() -> None:
        replay.save()
        replay_state = {"count": replay.count.tolist(), "rng": replay.rng.bit_generator.state}
        state = {
            "agent": agent.state_dict(), "rng": rng_state(), "counters": counters, "replay": replay_state,
        }
        save_checkpoint(logdir / CHECKPOINT, state, meta={"config": config})
        if run_cfg.keep_checkpoints:
            keep_copy(logdir / CHECKPOINT, counters["env_steps"])

    with RunDir(logdir, config) as run, envs:
        row = envs.reset()
        prev_action = np.zeros((n, envs.action_size), np.float32)
        policy_state = agent.initial_state(n)
        bar = progress(total=run_cfg.steps, desc=f"train {run_cfg.env}", initial=counters["env_steps"])
        while counters["env_steps"] < run_cfg.steps:
            prev_action[row["is_first"]] = 0.0
            for i in range(n):
                replay.add({**{k: v[i] for k, v in row.items()}, "action": prev_action[i]}, worker=i)
            if counters["env_steps"] < run_cfg.prefill:
                action = random_actions(envs)
            else:
                with torch.no_grad():
                    act, policy_state = agent.policy(to_torch(row), policy_state, mode="sample")
                action = act.numpy().astype(np.float32)
            row = envs.step(action)
            prev_action = action
            counters["env_steps"] += n
            bar.update(n)
            for episode in envs.episodes:
                counters["episodes"] += 1
                counters["last_return"] = episode["episode/return"]
                run.log(counters["env_steps"], episode)
            if counters["env_steps"] >= run_cfg.prefill:
                counters["credit"] += n * updates_per_step
                while counters["credit"] >= 1.0:
                    batch = replay.sample(agent_cfg.batch_size, agent_cfg.batch_length)
                    meter.add(agent.train(batch))
                    counters["credit"] -= 1.0
                    counters["updates"] += 1
            step = counters["env_steps"]
            if step % run_cfg.log_every < n:
                stats = meter.flush(step, counters["updates"])
                run.log(step, stats)
                bar.set_postfix(
                    updates_s=f"{stats['updates_per_s']:.2f}", ret=f"{counters['last_return']:.1f}"
                )
            if run_cfg.eval_every and step % run_cfg.eval_every < n:
                run.log(step, evaluate_agent(agent, run_cfg, run_cfg.eval_episodes))
            if step % run_cfg.checkpoint_every < n or step >= run_cfg.steps:
                checkpoint()
        bar.close()
    return dict(counters)


def evaluate_agent(agent: Any, run_cfg: RunConfig, episodes: int) -> dict[str, float]:
    """Greedy episodes on evaluation seeds: ``{"eval/return", "eval/return_std", "eval/length"}``."""
    with make_envs(run_cfg, num_envs=1, seed=run_cfg.seed + EVAL_SEED_OFFSET) as envs:
        stats = play_episodes(agent, envs, episodes)
    returns = [e["episode/return"] for e in stats]
    return {
        "eval/return": float(np.mean(returns)),
        "eval/return_std": float(np.std(returns)),
        "eval/length": float(np.mean([e["episode/length"] for e in stats])),
    }

