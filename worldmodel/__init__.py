"""worldmodel: DreamerV3-class world models, actor-critic learning, planners and control suites."""

from worldmodel.run import package_version

__version__ = package_version()
__all__ = ["__version__"]
