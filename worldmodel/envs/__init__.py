"""Control suites behind one interface: ``make_env("suite:task")`` and `EnvBatch`."""

from worldmodel.envs.adapter import ActionError, DreamerEnv, EnvError, ObservationError
from worldmodel.envs.gym_suite import UnknownTaskError
from worldmodel.envs.registry import SUITES, MissingDependencyError, make_env, split_name
from worldmodel.envs.vector import EnvBatch

__all__ = [
    "SUITES",
    "ActionError",
    "DreamerEnv",
    "EnvBatch",
    "EnvError",
    "MissingDependencyError",
    "ObservationError",
    "UnknownTaskError",
    "make_env",
    "split_name",
]
