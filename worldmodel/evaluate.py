"""Evaluate a trained run: ``worldmodel eval --logdir DIR --episodes K [--video FILE.mp4]``.

Loads the run's config and latest checkpoint, plays K episodes on evaluation seeds
(one environment, never a training seed) and returns mean and std of the episode
return.

Planner hook: `ACTORS` maps a ``--planner`` name to a factory ``factory(agent) ->
act``, where ``act(obs: dict[str, Tensor[B, ...]], state) -> (action [B, A], state)``
and ``state`` starts as ``agent.initial_state(B)``. ``policy`` (the learned actor in
greedy mode) is built in; planners over the learned model (worldmodel.planning)
register their factory here to become available as ``--planner NAME``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel.checkpoint import atomic_write_bytes, check_config_compatible, load_checkpoint
from worldmodel.config import config_to_dict
from worldmodel.envs import EnvError
from worldmodel.planning.dreamer import PLANNER_ACTORS, planner_actor
from worldmodel.run import seed_everything
from worldmodel.train import (
    CHECKPOINT,
    EVAL_SEED_OFFSET,
    RESUMABLE_KEYS,
    load_run_configs,
    make_envs,
    obs_shapes,
    play_episodes,
    saved_config,
)

Act = Callable[[dict[str, torch.Tensor], Any], tuple[torch.Tensor, Any]]


def _learned_policy(agent: Any) -> Act:
    def act(obs: dict[str, torch.Tensor], state: Any) -> tuple[torch.Tensor, Any]:
        return agent.policy(obs, state, mode="greedy")

    return act


ACTORS: dict[str, Callable[[Any], Act]] = {"policy": _learned_policy, **PLANNER_ACTORS}


def write_video(path: str | Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """Encode uint8 frames ``[H, W, 3]`` as MP4 and write the file atomically."""
    import imageio.v2 as imageio

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "video.mp4"
        imageio.mimwrite(scratch, frames, fps=fps, macro_block_size=1)
        return atomic_write_bytes(path, scratch.read_bytes())


@contextmanager
def loaded_run(
    logdir: str | Path, render: bool = False, checkpoint: str | Path | None = None
) -> Iterator[tuple[Any, Any, Any, dict[str, Any]]]:
    """A run's latest checkpoint (or ``checkpoint``, a copy of an earlier one of the same run) as
    an `Agent` beside one evaluation environment.

    Yields ``(run_cfg, agent, envs, counters)``; the environment uses the evaluation seed
    (never a training seed) and python/numpy/torch are seeded from it, so the same
    command gives the same numbers.
    """
    from worldmodel.agent import Agent

    run_cfg, agent_cfg = load_run_configs(logdir)
    state, meta = load_checkpoint(Path(logdir) / CHECKPOINT if checkpoint is None else Path(checkpoint))
    if checkpoint is not None:  # another run's weights must not load into this run's agent
        agent_keys = {"agent": saved_config(meta)["agent"]}
        check_config_compatible(agent_keys, {"agent": config_to_dict(agent_cfg)}, ignore=RESUMABLE_KEYS)
    torch.set_num_threads(run_cfg.threads)
    seed = run_cfg.seed + EVAL_SEED_OFFSET
    seed_everything(seed)
    with make_envs(run_cfg, num_envs=1, seed=seed, render=render) as envs:
        agent = Agent(obs_shapes(envs), envs.action_space, agent_cfg)
        agent.load_state_dict(state["agent"])
        yield run_cfg, agent, envs, state["counters"]


def evaluate(
    logdir: str | Path,
    episodes: int = 10,
    video: str | Path | None = None,
    planner: str = "policy",
    planner_options: Sequence[str] = (),
    checkpoint: str | Path | None = None,
) -> dict[str, Any]:
    """Play ``episodes`` episodes with the run's latest checkpoint (or ``checkpoint``: a saved copy
    of an earlier checkpoint of the same run).

    ``planner_options`` are ``key=value`` settings of the planner's config (e.g.
    ``["horizon=12", "num_samples=256"]`` for CEM; `worldmodel.planning`).
    Returns ``{"env", "env_steps", "episodes", "return_mean", "return_std", "length_mean",
    "planner", "planner_options"}``.
    """
    if episodes < 1:
        raise EnvError(f"episodes must be >= 1, got {episodes}")
    if planner not in ACTORS:
        raise EnvError(f"unknown planner '{planner}'; choose one of {', '.join(ACTORS)}")
    if planner_options and planner not in PLANNER_ACTORS:
        raise EnvError(f"planner options apply to {', '.join(PLANNER_ACTORS)}, not to {planner!r}")
    make_act = planner_actor(planner, list(planner_options)) if planner_options else ACTORS[planner]
    frames: list[np.ndarray] = []
    loaded = loaded_run(logdir, render=video is not None, checkpoint=checkpoint)
    with loaded as (run_cfg, agent, envs, counters):

        def record(row: dict[str, np.ndarray]) -> None:  # image observations, else rendered frames
            frames.append(row["image"][0] if "image" in row else envs.render())

        stats = play_episodes(
            agent, envs, episodes, act=make_act(agent), record=record if video is not None else None
        )
    if video is not None:
        write_video(video, frames)
    returns = [e["episode/return"] for e in stats]
    return {
        "env": run_cfg.env,
        "env_steps": int(counters["env_steps"]),
        "episodes": episodes,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "length_mean": float(np.mean([e["episode/length"] for e in stats])),
        "planner": planner,
        "planner_options": list(planner_options),
    }
