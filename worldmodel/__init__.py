"""worldmodel: DreamerV3-class world models, actor-critic learning, planners and control suites."""

from worldmodel.agent import Agent
from worldmodel.behavior import ActionSpec
from worldmodel.math import TwoHot, symexp, symlog
from worldmodel.presets import DreamerConfig, dreamer_config
from worldmodel.replay import Replay
from worldmodel.rssm import RSSM
from worldmodel.run import package_version
from worldmodel.world_model import WorldModel

__version__ = package_version()
__all__ = [
    "RSSM", "ActionSpec", "Agent", "DreamerConfig", "Replay", "TwoHot", "WorldModel", "__version__",
    "dreamer_config", "symexp", "symlog",
]
