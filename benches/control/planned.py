"""``python -m benches.control.planned``: the learned actor against a planner over the same learned
model, on the checkpoints of learning-curve runs.

    python -m benches.control.planned --planner mppi --episodes 5 \\
        runs/dmc_swingup_tiny_seed0 runs/dmc_swingup_tiny_seed1 runs/dmc_swingup_tiny_seed2

Each run directory's kept checkpoints (``checkpoints/step_<N>.safetensors``, written with
``run.keep_checkpoints=true``; ``--steps`` picks some) or, when it kept none, its latest one, is
played twice on the same evaluation seeds: with the greedy actor and with the planner (TD-MPC2 style:
the world model's imagined rewards plus the critic's value at the horizon). Writes
``benches/results/control_<task>_<planner>.json``: per seed and env step both returns and the
planner's seconds per episode, and the mean over seeds at every env step all seeds reached.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import shlex
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benches.control.learning import RESULTS, _slug
from worldmodel.checkpoint import atomic_write_json
from worldmodel.evaluate import evaluate
from worldmodel.run import package_version
from worldmodel.train import CHECKPOINT, load_run_configs

STEP_FILE = re.compile(r"step_(\d+)\.safetensors")


def checkpoints_of(logdir: Path, steps: Sequence[int] = ()) -> list[Path]:
    """The kept checkpoints in env-step order (those at ``steps`` when given), else the latest one.
    Raises SystemExit naming what is missing."""
    kept = sorted(
        (int(m.group(1)), p) for p in (logdir / "checkpoints").glob("step_*.safetensors")
        if (m := STEP_FILE.fullmatch(p.name))
    )
    if steps:
        missing = sorted(set(steps) - {s for s, _ in kept})
        if missing:
            have = ", ".join(str(s) for s, _ in kept) or "none"
            raise SystemExit(f"{logdir}: no kept checkpoint at env steps {missing} (kept: {have})")
        return [p for s, p in kept if s in steps]
    if kept:
        return [p for _, p in kept]
    if not (logdir / CHECKPOINT).is_file():
        raise SystemExit(f"{logdir}: no checkpoint (is it a `worldmodel train` run directory?)")
    return [logdir / CHECKPOINT]


def compare_checkpoint(logdir: Path, path: Path, planner: str, options: Sequence[str], episodes: int
                       ) -> dict[str, Any]:
    """The policy's and the planner's mean and std return on one checkpoint."""
    policy = evaluate(logdir, episodes=episodes, checkpoint=path)
    start = time.perf_counter()
    planned = evaluate(logdir, episodes=episodes, planner=planner, planner_options=options, checkpoint=path)
    return {
        "env_steps": policy["env_steps"],
        "policy": {"mean": policy["return_mean"], "std": policy["return_std"]},
        "planner": {"mean": planned["return_mean"], "std": planned["return_std"]},
        "planner_s_per_episode": (time.perf_counter() - start) / episodes,
    }


def compare_runs(logdirs: Sequence[Path], planner: str, options: Sequence[str], episodes: int,
                 steps: Sequence[int] = (), workers: int = 1) -> list[list[dict[str, Any]]]:
    """Per run, one `compare_checkpoint` row per checkpoint; ``workers`` processes share them."""
    jobs = [(i, d, path) for i, d in enumerate(logdirs) for path in checkpoints_of(d, steps)]
    args = [(d, path, planner, options, episodes) for _, d, path in jobs]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(compare_checkpoint, *zip(*args, strict=True)))
    else:
        rows = [compare_checkpoint(*a) for a in args]
    out: list[list[dict[str, Any]]] = [[] for _ in logdirs]
    for (i, _, _), row in zip(jobs, rows, strict=True):
        out[i].append(row)
    return out


def mean_over_seeds(per_seed: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """At each env step every seed has: the mean over seeds of the policy's and the planner's mean.

    >>> row = lambda s, a, b: {"env_steps": s, "policy": {"mean": a}, "planner": {"mean": b}}
    >>> mean_over_seeds({"0": [row(10, 1.0, 3.0), row(20, 2.0, 2.0)], "1": [row(10, 3.0, 5.0)]})
    [{'env_steps': 10, 'policy': 2.0, 'planner': 4.0, 'seeds': 2}]
    """
    common = set.intersection(*({r["env_steps"] for r in rows} for rows in per_seed.values()))
    out = []
    for step in sorted(common):
        at = [r for rows in per_seed.values() for r in rows if r["env_steps"] == step]
        out.append({
            "env_steps": step,
            "policy": float(np.mean([r["policy"]["mean"] for r in at])),
            "planner": float(np.mean([r["planner"]["mean"] for r in at])),
            "seeds": len(at),
        })
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benches.control.planned", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdirs", nargs="+", type=Path, help="run directories of one task (one per seed)")
    parser.add_argument("--planner", default="mppi", help="shooting, cem, mppi or mcts")
    parser.add_argument("--planner-opt", action="append", default=[], help="key=value, repeatable")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--steps", default="", help="comma list of kept checkpoints' env steps (default all)")
    parser.add_argument("--workers", type=int, default=1, help="processes evaluating checkpoints at once")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.workers < 1:
        parser.error(f"--episodes and --workers must be >= 1, got {args.episodes} and {args.workers}")
    try:
        steps = [int(s) for s in args.steps.split(",") if s]
    except ValueError:
        parser.error(f"--steps takes a comma list of env steps, got {args.steps!r}")
    runs = []  # (logdir, env, seed)
    for logdir in args.logdirs:
        if not (logdir / "config.json").is_file():
            raise SystemExit(f"{logdir}: not a run directory (no config.json)")
        run_cfg, _ = load_run_configs(logdir)
        runs.append((logdir, run_cfg.env, run_cfg.seed))
    if len({env for _, env, _ in runs}) != 1:
        raise SystemExit(f"the runs are of different tasks: {sorted({env for _, env, _ in runs})}")
    if len({seed for _, _, seed in runs}) != len(runs):
        raise SystemExit(f"two runs have the same seed: {[(str(d), s) for d, _, s in runs]}")
    env = runs[0][1]
    rows = compare_runs([d for d, _, _ in runs], args.planner, args.planner_opt, args.episodes, steps,
                        args.workers)
    per_seed = {str(seed): r for (_, _, seed), r in zip(runs, rows, strict=True)}
    summary = {
        "command": "python -m benches.control.planned " + shlex.join(map(str, argv or sys.argv[1:])),
        "version": package_version(),
        "env": env,
        "planner": args.planner,
        "planner_options": args.planner_opt,
        "episodes": args.episodes,
        "runs": {str(seed): str(logdir) for logdir, _, seed in runs},
        "per_seed": per_seed,
        "mean": mean_over_seeds(per_seed),
    }
    out = args.out or RESULTS / f"control_{_slug(env)}_{args.planner}.json"
    atomic_write_json(out, summary)
    print(json.dumps({"out": str(out), "mean": summary["mean"]}))
    return summary


if __name__ == "__main__":
    main()
