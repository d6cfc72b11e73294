"""Learning curves of the recommended control preset (one seed per process).

    python -m benches.control.learning run --env gym:CartPole-v1 --steps 10000 --seed 0
    python -m benches.control.learning report --env gym:CartPole-v1 --target 475

``run`` trains one seed with greedy evaluations every ``--eval-every`` env steps and
writes ``benches/results/control_<task>_seed<S>.json`` (curve, wall time, updates/s);
``report`` merges the seeds into ``benches/results/control_<task>.json`` and plots
``benches/results/control_<task>.png``. Seeds run one after another (the CPU is
shared), one torch thread each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.checkpoint import atomic_write_bytes, atomic_write_json
from worldmodel.config import config_to_dict
from worldmodel.run import read_metrics
from worldmodel.train import build_configs, train

RESULTS = Path(__file__).resolve().parents[1] / "results"

# The recommended settings per task: the `tiny` preset (worldmodel/presets.py) learns
# CartPole-v1 within 10k env steps on a 2-core CPU.
RECOMMENDED: dict[str, dict[str, Any]] = {"gym:CartPole-v1": {"size": "tiny"}}


def _slug(env: str) -> str:
    return env.replace(":", "_").replace("-", "_").replace("/", "_").lower()


def run_seed(env: str, steps: int, seed: int, size: str | None, train_ratio: float | None, eval_every: int,
             overrides: list[str], logdir: Path) -> dict[str, Any]:
    """Train one seed; its eval curve and speed, also written as JSON to benches/results."""
    recommended = RECOMMENDED.get(env, {})
    run_cfg, agent_cfg = build_configs(
        [*overrides, f"run.eval_every={eval_every}",
         "run.eval_episodes=5", f"run.log_every={eval_every}", f"run.checkpoint_every={steps}"],
        env=env, size=size or recommended.get("size", "xs"), steps=steps, seed=seed, train_ratio=train_ratio,
    )
    start = time.perf_counter()
    result = train(run_cfg, agent_cfg, logdir)
    wall = time.perf_counter() - start
    rows = read_metrics(logdir)
    curve = [(r["step"], r["eval/return"]) for r in rows if "eval/return" in r]
    speed = [r for r in rows if "updates_per_s" in r and r["updates"] > 0]
    out = {
        "env": env,
        "seed": seed,
        "steps": steps,
        "wall_s": wall,
        "updates": result["updates"],
        "updates_per_s": result["updates"] / wall,
        "fps_last": speed[-1]["fps"] if speed else None,
        "eval_curve": curve,
        "train_episodes": [(r["step"], r["episode/return"]) for r in rows if "episode/return" in r],
        "config": {"run": config_to_dict(run_cfg), "agent": config_to_dict(agent_cfg)},
    }
    atomic_write_json(RESULTS / f"control_{_slug(env)}_seed{seed}.json", out)
    return out


def first_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first env step whose eval return is >= target (None if never)."""
    return next((step for step, ret in curve if ret >= target), None)


def report(env: str, target: float) -> dict[str, Any]:
    """Merge the per-seed files of ``env`` into one summary JSON and a plot."""
    seeds = [json.loads(p.read_text()) for p in sorted(RESULTS.glob(f"control_{_slug(env)}_seed*.json"))]
    if not seeds:
        raise SystemExit(f"no per-seed results for {env} in {RESULTS}")
    mean_curve = _mean_curve(seeds)
    summary = {
        "env": env,
        "target": target,
        "seeds": [s["seed"] for s in seeds],
        "mean_curve": mean_curve,
        "mean_steps_to_target": first_reach(mean_curve, target),
        "final_eval_mean": float(np.mean([s["eval_curve"][-1][1] for s in seeds])),
        "steps_to_target": {s["seed"]: first_reach(s["eval_curve"], target) for s in seeds},
        "wall_s": {s["seed"]: round(s["wall_s"], 1) for s in seeds},
        "updates_per_s": {s["seed"]: round(s["updates_per_s"], 3) for s in seeds},
        "curves": {s["seed"]: s["eval_curve"] for s in seeds},
    }
    atomic_write_json(RESULTS / f"control_{_slug(env)}.json", summary)
    _plot(env, seeds, target, RESULTS / f"control_{_slug(env)}.png")
    return summary


def _mean_curve(seeds: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """The mean over seeds of the eval return at each eval step all seeds share."""
    shared = sorted(set.intersection(*(set(dict(s["eval_curve"])) for s in seeds)))
    return [(step, float(np.mean([dict(s["eval_curve"])[step] for s in seeds]))) for step in shared]


def _plot(env: str, seeds: list[dict[str, Any]], target: float, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for s in seeds:
        steps, returns = zip(*s["eval_curve"], strict=True)
        ax.plot(steps, returns, marker="o", label=f"seed {s['seed']}")
    steps, returns = zip(*_mean_curve(seeds), strict=True)
    ax.plot(steps, returns, color="black", linewidth=2.5, label="mean over seeds")
    ax.axhline(target, color="gray", linestyle="--", label=f"target {target:g}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("greedy eval return (5 episodes)")
    ax.set_title(env)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("--env", default="gym:CartPole-v1")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default=None, help="preset (default: the task's recommended one, else xs)")
    parser.add_argument("--train-ratio", type=float, default=None)
    parser.add_argument("--eval-every", type=int, default=1_000)
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--logdir", default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    if args.command == "run":
        logdir = Path(args.logdir or tempfile.mkdtemp(prefix=f"arrcoc_{_slug(args.env)}_seed{args.seed}_"))
        out = run_seed(args.env, args.steps, args.seed, args.size, args.train_ratio, args.eval_every,
                       args.overrides, logdir)
        print(json.dumps({k: v for k, v in out.items() if k not in ("train_episodes", "config")}))
    else:
        print(json.dumps(report(args.env, args.target)))


if __name__ == "__main__":
    main()
