"""Real-environment episodes for V-M-C: recording, random rollouts (step 1), and their ``.npz`` files.

An episode is a dict of arrays: ``frames [T+1, 64, 64, 3]`` uint8, ``actions [T, A]`` float32,
``rewards [T]``, ``dones [T]`` (row t: the transition from frame t with action t).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from worldmodel.run import progress

if TYPE_CHECKING:
    from worldmodel.vmc.pipeline import VMCConfig

Episode = dict[str, np.ndarray]
KEYS = ("frames", "actions", "rewards", "dones")


def record_episode(
    env: Any, seed: int, max_steps: int, policy: Callable[[np.ndarray], np.ndarray]
) -> Episode:
    """One episode on env seed ``seed`` of at most ``max_steps`` steps and the env's ``max_steps``;
    ``policy(frame [64, 64, 3]) -> action [A]`` is called once per step, in order."""
    frames, actions, rewards, dones = [env.reset(seed)], [], [], []
    for _ in range(min(max_steps, env.max_steps)):
        action = np.asarray(policy(frames[-1]))
        frame, reward, done = env.step(action)
        frames.append(frame)
        actions.append(action)
        rewards.append(reward)
        dones.append(done)
        if done:
            break
    return {
        "frames": np.stack(frames),
        "actions": np.stack(actions).astype(np.float32),
        "rewards": np.asarray(rewards, np.float32),
        "dones": np.asarray(dones, np.float32),
    }


def collect(env: Any, episodes: int, max_steps: int, seed: int) -> list[Episode]:
    """Step 1: random rollouts (the env's ``random_action``, which may hold an action for a few
    steps); episode ``i`` on env seed ``seed + i``."""
    rng = np.random.default_rng(seed)
    data = []
    for ep in progress(range(episodes), desc="random rollouts"):
        last = None

        def policy(frame: np.ndarray) -> np.ndarray:
            nonlocal last
            last = env.random_action(rng, last)
            return last

        data.append(record_episode(env, seed + ep, max_steps, policy))
    return data


def save_rollouts(path: str | Path, data: list[Episode], meta: dict[str, Any]) -> None:
    """Write episodes to one ``.npz`` (episodes concatenated, ``lengths [E]`` transitions each) with
    ``meta`` (``env``, ``seed``, ``max_steps``, ...), atomically (a temp file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.concatenate([ep[k] for ep in data]) for k in KEYS}
    lengths = np.array([len(ep["actions"]) for ep in data], np.int64)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, lengths=lengths, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    tmp.replace(path)


def load_rollouts(path: str | Path, episodes: int | None, meta: dict[str, Any]) -> list[Episode]:
    """The first ``episodes`` (``None``: all) episodes of a ``save_rollouts`` file; refuses a file
    whose meta differs from ``meta`` in any key ``meta`` gives, or with fewer episodes."""
    with np.load(path) as npz:
        saved = json.loads(str(npz["meta"]))
        if any(saved.get(k) != v for k, v in json.loads(json.dumps(meta)).items()):
            raise ValueError(f"{path} holds rollouts of {saved}, not {meta}")
        lengths = npz["lengths"]
        episodes = len(lengths) if episodes is None else episodes
        if len(lengths) < episodes:
            raise ValueError(f"{path} holds {len(lengths)} episodes, {episodes} requested")
        steps = np.concatenate([[0], np.cumsum(lengths)])  # transitions before each episode
        arrays = {k: npz[k] for k in KEYS}
    data = []
    for ep in range(episodes):  # episode ep has lengths[ep] + 1 frames
        a, b = int(steps[ep]), int(steps[ep + 1])
        episode = {k: arrays[k][a:b] for k in KEYS[1:]}
        data.append({"frames": arrays["frames"][a + ep : b + ep + 1], **episode})
    return data


def rollouts(env: Any, cfg: VMCConfig) -> list[Episode]:
    """Step 1 through ``cfg.data_cache``: load the saved rollouts, or collect and save them; then
    append every episode of the ``cfg.extra_data`` files (rollouts of the same env)."""
    meta = {"env": cfg.env, "seed": cfg.seed, "max_steps": cfg.max_steps, "hold_max": cfg.hold_max}
    if cfg.data_cache and Path(cfg.data_cache).is_file():
        data = load_rollouts(cfg.data_cache, cfg.episodes, meta)
    else:
        data = collect(env, cfg.episodes, cfg.max_steps, cfg.seed)
        if cfg.data_cache:
            save_rollouts(cfg.data_cache, data, meta)
    for path in filter(None, cfg.extra_data.split(",")):
        data += load_rollouts(path, None, {"env": cfg.env})
    return data
