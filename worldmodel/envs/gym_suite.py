"""The ``gym:`` suite: gymnasium ids, user classes (``module:Class``) and entry points.

Three ways to name a task:

- a registered gymnasium id: ``gym:CartPole-v1`` (also ``gym:mypkg:MyEnv-v0``, which
  imports ``mypkg`` first so that it can register itself);
- a class or factory in an importable module: ``gym:mypkg.envs:GridWorld``; it is
  called with no arguments and must return a ``gymnasium.Env``;
- a name registered by an installed package under the ``arrcoc.envs`` entry-point
  group, e.g. in its pyproject.toml::

      [project.entry-points."arrcoc.envs"]
      gridworld = "mypkg.envs:GridWorld"

  then ``gym:gridworld``.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points

import gymnasium as gym

from worldmodel.envs.adapter import EnvError

ENTRY_POINT_GROUP = "arrcoc.envs"


class UnknownTaskError(EnvError):
    """A task name that no suite knows."""


def _plugin_envs() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def gym_task_names() -> list[str]:
    """Registered gymnasium ids plus names from the ``arrcoc.envs`` entry points."""
    return sorted(set(gym.registry) | set(_plugin_envs()))


def _check_env(env: object, source: str) -> gym.Env:
    if not isinstance(env, gym.Env):
        raise EnvError(f"gym:{source} returned {type(env).__name__}, not a gymnasium.Env")
    return env


def make_gym(task: str, time_limit: int | None = None, render_mode: str | None = None) -> gym.Env:
    """Build the gymnasium environment named by ``task`` (see the module docstring).

    ``render_mode`` is passed to registered ids; user classes are built without arguments.
    """
    plugins = _plugin_envs()
    if task in plugins:
        env = _check_env(plugins[task].load()(), task)  # type: ignore[attr-defined]
    elif ":" in task and task.rsplit(":", 1)[1] and not task.rsplit(":", 1)[1][0].isdigit():
        module_name, attr = task.rsplit(":", 1)
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UnknownTaskError(f"gym:{task}: cannot import module '{module_name}': {err}") from None
        factory = getattr(module, attr, None)
        if callable(factory):
            env = _check_env(factory(), task)
        elif attr in gym.registry:
            return gym.make(attr, max_episode_steps=time_limit, render_mode=render_mode)
        else:
            raise UnknownTaskError(
                f"gym:{task}: module '{module_name}' has no class '{attr}' "
                f"and registers no gymnasium id '{attr}'"
            )
    elif task in gym.registry:
        return gym.make(task, max_episode_steps=time_limit, render_mode=render_mode)
    else:
        close = difflib.get_close_matches(task, gym_task_names(), n=5, cutoff=0.5)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise UnknownTaskError(
            f"unknown gym task '{task}'.{hint} Give a gymnasium id, 'module:Class', or an "
            f"'{ENTRY_POINT_GROUP}' entry-point name."
        )
    if time_limit is not None:
        env = gym.wrappers.TimeLimit(env, max_episode_steps=time_limit)
    return env
