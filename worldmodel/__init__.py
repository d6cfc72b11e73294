"""worldmodel: DreamerV3-class world models, actor-critic learning, planners and control suites."""

from worldmodel.math import TwoHot, symexp, symlog
from worldmodel.rssm import RSSM
from worldmodel.run import package_version

__version__ = package_version()
__all__ = ["RSSM", "TwoHot", "__version__", "symexp", "symlog"]
