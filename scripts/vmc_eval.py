"""Evaluate a saved V-M-C run's controller on held-out real episodes (`worldmodel.vmc.evaluate`).

    .venv/bin/python scripts/vmc_eval.py --logdir runs/vmc_tc_iter --episodes 100

Plays C (with V and M) and the random policy on the same env seeds, ``seed + 20,000`` onwards by
default: seeds that neither the rollouts, the CMA-ES search nor the run's own evaluation (which
chose the best iteration) used. Prints the summary and writes it to ``--out`` (default
``LOGDIR/heldout.json``) atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from worldmodel.checkpoint import CheckpointError, atomic_write_json
from worldmodel.vmc.evaluate import HELDOUT_SEED_OFFSET, evaluate_run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logdir", required=True, help="logdir (or vmc.safetensors) of a run")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed-offset", type=int, default=HELDOUT_SEED_OFFSET)
    parser.add_argument("--out", default=None, help="JSON file (default LOGDIR/heldout.json)")
    args = parser.parse_args()
    try:
        summary = evaluate_run(args.logdir, args.episodes, args.seed_offset)
    except (CheckpointError, ValueError) as err:
        sys.exit(f"vmc_eval: {err}")
    summary = {"command": " ".join(["python scripts/vmc_eval.py", *sys.argv[1:]]), **summary}
    logdir = Path(args.logdir)
    out = Path(args.out) if args.out else (logdir if logdir.is_dir() else logdir.parent) / "heldout.json"
    atomic_write_json(out, summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
