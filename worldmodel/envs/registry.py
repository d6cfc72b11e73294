"""`make_env("suite:task")`: one entry point for every control suite.

=========  ============================  ===========================================
suite      example                       observations
=========  ============================  ===========================================
gym        gym:CartPole-v1               whatever the env gives (vector and/or image)
           gym:mypkg.envs:GridWorld      (a user's class; see `gym_suite`)
dmc        dmc:walker-walk               vector (proprio) or 64x64 image (pixels=True)
minatar    minatar:breakout              vector (flattened 10x10xC grid)
atari      atari:pong                    64x64x3 image, Atari100k settings
crafter    crafter:reward                64x64x3 image, achievements when done
=========  ============================  ===========================================
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym

from worldmodel.envs.adapter import DreamerEnv, EnvError
from worldmodel.envs.gym_suite import UnknownTaskError, make_gym

INSTALL_HINT = "pip install arrcoc[control]"
OPTIONAL_PACKAGES = {"dm_control", "mujoco", "minatar", "ale_py", "crafter", "cv2"}


class MissingDependencyError(EnvError):
    """A suite needs an optional package that is not installed."""


@dataclass(frozen=True)
class EnvOptions:
    """The `make_env` options every suite builder receives (each uses the ones it knows)."""

    seed: int = 0
    pixels: bool = False
    size: tuple[int, int] = (64, 64)
    action_repeat: int | None = None
    time_limit: int | None = None
    life_loss: bool = False
    render: bool = False


def _limit(env: gym.Env, opt: EnvOptions) -> gym.Env:
    return gym.wrappers.TimeLimit(env, opt.time_limit) if opt.time_limit is not None else env


def _dmc(task: str, opt: EnvOptions) -> gym.Env:
    from worldmodel.envs.dmc_suite import DMCEnv, dmc_task_names

    if task not in dmc_task_names():
        raise _unknown_task("dmc", task, dmc_task_names())
    repeat = 2 if opt.action_repeat is None else opt.action_repeat
    return DMCEnv(task, opt.seed, opt.pixels, opt.size, action_repeat=repeat, time_limit=opt.time_limit)


def _minatar(task: str, opt: EnvOptions) -> gym.Env:
    from worldmodel.envs.minatar_suite import GAMES, MinAtarEnv

    if task not in GAMES:
        raise _unknown_task("minatar", task, list(GAMES))
    return _limit(MinAtarEnv(task, seed=opt.seed), opt)


def _atari(task: str, opt: EnvOptions) -> gym.Env:
    from worldmodel.envs.atari_suite import atari_task_names, make_atari

    if task not in atari_task_names():
        raise _unknown_task("atari", task, atari_task_names())
    return make_atari(task, size=opt.size, life_loss=opt.life_loss, time_limit=opt.time_limit)


def _crafter(task: str, opt: EnvOptions) -> gym.Env:
    from worldmodel.envs.crafter_suite import TASKS, CrafterEnv

    if task not in TASKS:
        raise _unknown_task("crafter", task, list(TASKS))
    return _limit(CrafterEnv(task, seed=opt.seed, size=opt.size), opt)


def _gym(task: str, opt: EnvOptions) -> gym.Env:
    return make_gym(task, time_limit=opt.time_limit, render_mode="rgb_array" if opt.render else None)


SUITES: dict[str, Callable[..., gym.Env]] = {
    "gym": _gym,
    "dmc": _dmc,
    "minatar": _minatar,
    "atari": _atari,
    "crafter": _crafter,
}


def _unknown_task(suite: str, task: str, names: list[str]) -> UnknownTaskError:
    close = difflib.get_close_matches(task, names, n=5, cutoff=0.4)
    hint = f" Closest: {', '.join(close)}." if close else f" Tasks: {', '.join(names[:20])}."
    return UnknownTaskError(f"unknown {suite} task '{task}'.{hint}")


def split_name(name: str) -> tuple[str, str]:
    """``"dmc:walker-walk"`` -> ``("dmc", "walker-walk")``; raises UnknownTaskError otherwise."""
    suite, sep, task = name.partition(":")
    if not sep or not task:
        raise UnknownTaskError(
            f"environment '{name}' must be 'suite:task', e.g. gym:CartPole-v1. Suites: {', '.join(SUITES)}"
        )
    if suite not in SUITES:
        close = difflib.get_close_matches(suite, list(SUITES), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UnknownTaskError(f"unknown suite '{suite}'.{hint} Suites: {', '.join(SUITES)}")
    return suite, task


def make_env(
    name: str,
    seed: int = 0,
    *,
    pixels: bool = False,
    size: tuple[int, int] = (64, 64),
    action_repeat: int | None = None,
    time_limit: int | None = None,
    life_loss: bool = False,
    render: bool = False,
) -> DreamerEnv:
    """Build ``suite:task`` behind the common interface (`DreamerEnv`).

    Args:
        name: ``suite:task``, e.g. ``gym:CartPole-v1``, ``dmc:walker-walk``.
        seed: seeds the task's randomness; pass it to the first ``reset(seed=...)`` too
            (`EnvBatch` does).
        pixels: dmc only: 64x64 renders instead of proprioceptive state.
        size: image size ``(H, W)`` for dmc pixels, atari and crafter.
        action_repeat: dmc only (default 2); atari always skips 4 frames.
        time_limit: maximum agent steps per episode (default: the suite's own).
        life_loss: atari only: a lost life ends the episode.
        render: gym only: create the env with ``render_mode="rgb_array"`` (for videos).
    """
    suite, task = split_name(name)
    if time_limit is not None and time_limit < 1:
        raise EnvError(f"time_limit must be >= 1, got {time_limit}")
    try:
        options = EnvOptions(seed, pixels, tuple(size), action_repeat, time_limit, life_loss, render)
        env = SUITES[suite](task, options)
    except ModuleNotFoundError as err:
        if err.name not in OPTIONAL_PACKAGES:
            raise
        raise MissingDependencyError(
            f"suite '{suite}' needs the package '{err.name}', which is not installed: {INSTALL_HINT}"
        ) from None
    return DreamerEnv(env, name=name)
