"""Run Ha & Schmidhuber's five V-M-C steps on CarRacing-v3 or VizDoom take_cover.

    .venv/bin/python scripts/vmc_run.py --env take_cover --logdir runs/vmc_take_cover \
        episodes=60 vae_epochs=3 mdn_epochs=20 dream.generations=40

Overrides are ``key=value`` fields of `worldmodel.vmc.VMCConfig` (``dream.*`` for CMA-ES).
Prints the summary and writes it to ``benches/results/vmc_<env>.json`` (and the logdir).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from worldmodel.checkpoint import atomic_write_json
from worldmodel.config import resolve_config
from worldmodel.vmc import VMCConfig, run_vmc

RESULTS = Path(__file__).resolve().parents[1] / "benches" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", choices=["carracing", "take_cover"], required=True)
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--results", default=str(RESULTS), help="directory for vmc_<env>.json ('' = none)")
    parser.add_argument("overrides", nargs="*", help="VMCConfig key=value overrides")
    args = parser.parse_args()
    cfg = resolve_config(VMCConfig, [f"env={args.env}", *args.overrides])
    summary = {"command": " ".join(["python scripts/vmc_run.py", *sys.argv[1:]]), **run_vmc(cfg, args.logdir)}
    if args.results:
        atomic_write_json(Path(args.results) / f"vmc_{args.env}.json", summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
