"""Ha & Schmidhuber's iterative training from a finished V-M-C run (`worldmodel.vmc.iterative`).

    .venv/bin/python scripts/vmc_iterate.py --from runs/vmc_tc_v2/c3 --logdir runs/vmc_tc_iter \
        iterations=3 iter_episodes=100 iter_mdn_epochs=3 dream.generations=40

Each iteration collects on-policy real episodes with the current C (with exploration), retrains
M on all the data, re-evolves C warm-started at the current one and evaluates it for real.
Overrides: ``iterations``, ``iter_episodes``, ``iter_mdn_epochs``, ``iter_noise``, ``iter_explore``
(`worldmodel.vmc.iterative.IterateConfig`); any other ``key=value`` updates the source run's
`worldmodel.vmc.VMCConfig` (``dream.*`` for CMA-ES, ``eval_episodes``, ``threads``, ...).
Prints the summary (also written to the logdir with the weights and the new rollouts).
"""

from __future__ import annotations

import argparse
import json
import sys

from worldmodel.checkpoint import CheckpointError
from worldmodel.config import ConfigError, resolve_config
from worldmodel.vmc.iterative import IterateConfig, iterate_vmc, split_overrides


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--from", dest="source", required=True, help="logdir (or vmc.safetensors) of a run")
    parser.add_argument("--logdir", required=True)
    parser.add_argument("overrides", nargs="*", help="key=value overrides (see above)")
    args = parser.parse_args()
    mine, theirs = split_overrides(args.overrides)
    try:
        icfg = resolve_config(IterateConfig, mine)
        command = " ".join(["python scripts/vmc_iterate.py", *sys.argv[1:]])
        summary = iterate_vmc(args.source, args.logdir, icfg, theirs, command=command)
    except (CheckpointError, ConfigError, ValueError) as err:
        sys.exit(f"vmc_iterate: {err}")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
