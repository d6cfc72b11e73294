"""Planners over a learned latent model: random shooting, CEM, MPPI and MuZero-style MCTS.

Every planner takes a :class:`LatentModel` and exposes ``act(state [B, ...]) -> [B, A]``
and ``reset()``; :func:`make_planner` builds one by name with ``key=value`` overrides.
"""

from __future__ import annotations

from collections.abc import Sequence

from worldmodel.config import resolve_config
from worldmodel.planning.base import LatentModel, Planner, PlannerConfigError, imagined_return
from worldmodel.planning.cem import CEMConfig, CEMPlanner
from worldmodel.planning.mcts import MCTSConfig, MCTSPlanner, puct_scores
from worldmodel.planning.mppi import MPPIConfig, MPPIPlanner
from worldmodel.planning.shooting import ShootingConfig, ShootingPlanner

PLANNERS = {
    "shooting": (ShootingPlanner, ShootingConfig),
    "cem": (CEMPlanner, CEMConfig),
    "mppi": (MPPIPlanner, MPPIConfig),
    "mcts": (MCTSPlanner, MCTSConfig),
}


def make_planner(name: str, model: LatentModel, overrides: Sequence[str] = ()) -> Planner:
    """Build planner ``name`` (one of :data:`PLANNERS`) over ``model`` with ``key=value`` overrides."""
    if name not in PLANNERS:
        raise PlannerConfigError(f"unknown planner {name!r}; choose one of {sorted(PLANNERS)}")
    planner_cls, config_cls = PLANNERS[name]
    return planner_cls(model, resolve_config(config_cls, overrides))


__all__ = [
    "PLANNERS",
    "CEMConfig",
    "CEMPlanner",
    "LatentModel",
    "MCTSConfig",
    "MCTSPlanner",
    "MPPIConfig",
    "MPPIPlanner",
    "Planner",
    "PlannerConfigError",
    "ShootingConfig",
    "ShootingPlanner",
    "imagined_return",
    "make_planner",
    "puct_scores",
]
