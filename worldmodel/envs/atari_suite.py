"""The ``atari:`` suite: ALE games with the Atari100k settings.

``atari:pong`` -> ``ALE/Pong-v5`` with sticky actions (p = 0.25), frame skip 4 with
max-pooling over the last two frames, up to 30 no-ops at reset, 64x64 RGB
observations, the full 18-action set, and a limit of 108,000 frames (27,000 agent
steps). ``life_loss=True`` ends the episode (terminal) when a life is lost, as some
Atari agents train; the default keeps playing (DreamerV3's setting).
"""

from __future__ import annotations

import gymnasium as gym

from worldmodel.envs.adapter import EnvError

_FRAMES_LIMIT = 108_000


def atari_game_id(task: str) -> str:
    """``"pong"`` or ``"space_invaders"`` -> ``"ALE/Pong-v5"`` / ``"ALE/SpaceInvaders-v5"``."""
    return "ALE/" + "".join(part.capitalize() for part in task.split("_")) + "-v5"


def atari_task_names() -> list[str]:
    """Snake-case names of the ALE games that gymnasium registers."""
    import re

    import ale_py

    gym.register_envs(ale_py)
    names = [k[4:-3] for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5")]
    return sorted(re.sub(r"(?<!^)(?=[A-Z])", "_", n).lower() for n in names)


def make_atari(
    task: str,
    size: tuple[int, int] = (64, 64),
    life_loss: bool = False,
    time_limit: int | None = None,
) -> gym.Env:
    """An Atari100k-style ALE environment with ``[H, W, 3]`` uint8 observations."""
    import ale_py

    gym.register_envs(ale_py)
    game = atari_game_id(task)
    if game not in gym.registry:
        raise EnvError(f"unknown atari game '{task}' (looked for {game})")
    if size[0] != size[1]:
        raise EnvError(f"atari observations must be square, got size {size}")
    limit = time_limit if time_limit is not None else _FRAMES_LIMIT // 4
    env = gym.make(
        game,
        frameskip=1,
        repeat_action_probability=0.25,
        full_action_space=True,
        max_num_frames_per_episode=limit * 4,
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=30,
        frame_skip=4,
        screen_size=size[0],
        terminal_on_life_loss=life_loss,
        grayscale_obs=False,
    )
    return gym.wrappers.TimeLimit(env, max_episode_steps=limit)

