"""Learning curves of the recommended control preset (one seed per process).

    python -m benches.control.learning run --env gym:CartPole-v1 --steps 10000 --seed 0
    python -m benches.control.learning report --env gym:CartPole-v1 --target 475

``run`` trains one seed with greedy evaluations every ``--eval-every`` env steps and
writes ``benches/results/control_<task>_seed<S>.json`` (curve, wall-clock time at each
eval point, updates/s); ``report`` merges the seeds into
``benches/results/control_<task>.json`` and plots ``benches/results/control_<task>.png``.
Seeds run one after another (the CPU is shared), one torch thread each. ``--tag NAME``
keeps a variant's files apart (``control_<task>_<NAME>_seed<S>.json``, merged by
``report --tag NAME``), e.g. a run with other config overrides.

For CartPole-v1 ``report`` also compares the wall-clock time to the target with an
*estimate* for sheeprl 0.8.4 DreamerV3 (`SHEEPRL_ESTIMATES`): the gradient steps it
needs to reach ~500 (documented, sheeprl issue #288) divided by its gradient steps/s
measured on this machine. It is not a sheeprl run to the target in the same invocation
(that would take ~1.5 h on this CPU).
"""

from __future__ import annotations

import argparse
import json
import re
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

# The recommended settings per task: the `tiny` preset (worldmodel/presets.py), the CPU
# preset, for discrete (CartPole-v1) and continuous (Pendulum-v1) control alike.
RECOMMENDED: dict[str, dict[str, Any]] = {
    "gym:CartPole-v1": {"size": "tiny"},
    "gym:Pendulum-v1": {"size": "tiny"},
}

# sheeprl 0.8.4 DreamerV3 on CartPole-v1, from documented numbers (not run here to the
# target): ~500 return by ~8,000 env steps (DreamerV3-S, sheeprl issue #288, see
# ../shared/docs/dreamer-reference.md) with learning_starts 512 and replay_ratio 0.5
# gradient steps per policy step (the command in ../shared/docs/environment.md), i.e.
# (8000 - 512) * 0.5 = 3,744 gradient steps, at 0.65 gradient steps/s (DreamerV3-XS,
# `Time/sps_train`, measured on this CPU; environment.md). Only gradient time counts:
# sheeprl's env steps and acting are left out, which favours sheeprl.
ESTIMATE_NOTE = "sheeprl side estimated from documented numbers, not run to the target in this invocation"
SHEEPRL_ESTIMATES: dict[str, dict[str, float]] = {
    "gym:CartPole-v1": {"env_steps_to_target": 8000, "learning_starts": 512, "replay_ratio": 0.5,
                        "grad_steps_per_s": 0.65},
}


def _slug(env: str) -> str:
    return env.replace(":", "_").replace("-", "_").replace("/", "_").lower()


def run_seed(env: str, steps: int, seed: int, size: str | None, train_ratio: float | None, eval_every: int,
             overrides: list[str], logdir: Path, write: bool = True, tag: str = "") -> dict[str, Any]:
    """Train one seed; its eval curve and speed, also written as JSON to benches/results
    (under the variant ``tag``, if any) unless ``write`` is False."""
    stem = results_stem(env, tag)  # a bad tag fails before any training
    recommended = RECOMMENDED.get(env, {})
    run_cfg, agent_cfg = build_configs(
        # Checkpoints at every eval, so an interrupted seed resumes from its last eval
        # (re-run the same command); the user's overrides come last and win.
        [f"run.eval_every={eval_every}", "run.eval_episodes=5", f"run.log_every={eval_every}",
         f"run.checkpoint_every={eval_every}", *overrides],
        env=env, size=size or recommended.get("size", "xs"), steps=steps, seed=seed, train_ratio=train_ratio,
    )
    start = time.perf_counter()
    result = train(run_cfg, agent_cfg, logdir)
    wall = time.perf_counter() - start
    rows = read_metrics(logdir)
    curve = [(r["step"], r["eval/return"]) for r in rows if "eval/return" in r]
    clock = training_clock(rows)
    train_wall = max(clock.values(), default=wall)  # the whole training time, across resumes
    speed = [r for r in rows if "updates_per_s" in r and r["updates"] > 0]
    out = {
        "env": env,
        "seed": seed,
        "steps": steps,
        "wall_s": wall,  # this process only; a resumed seed's earlier part is in train_wall_s
        "train_wall_s": train_wall,
        "updates": result["updates"],
        "updates_per_s": result["updates"] / train_wall,
        "fps_last": speed[-1]["fps"] if speed else None,
        "eval_curve": curve,
        "eval_wall_s": [(step, clock[step]) for step, _ in curve],
        "train_episodes": [(r["step"], r["episode/return"]) for r in rows if "episode/return" in r],
        "config": {"run": config_to_dict(run_cfg), "agent": config_to_dict(agent_cfg)},
    }
    if write:
        atomic_write_json(RESULTS / f"{stem}_seed{seed}.json", out)
    return out


def results_stem(env: str, tag: str = "") -> str:
    """``control_<task>`` or, for a variant, ``control_<task>_<tag>``: the prefix of its files."""
    if tag and (not re.fullmatch(r"[a-z0-9][a-z0-9-]*", tag) or tag.startswith("seed")):
        raise SystemExit(f"--tag: lower-case letters, digits and '-', not starting with 'seed'; got {tag!r}")
    return f"control_{_slug(env)}" + (f"_{tag}" if tag else "")


def training_clock(rows: list[dict[str, Any]]) -> dict[int, float]:
    """Wall-clock seconds from the start of training to each logged env step.

    The runner's speed rows (every ``run.log_every`` env steps) carry ``fps``, the env
    steps since the previous row over the seconds since it, so each interval lasted
    ``(step - previous step) / fps``; their running sum is the clock. A row is written
    before the evaluation at the same step, so the time at an eval point includes the
    earlier evaluations but not its own.
    """
    clock, elapsed, previous = {}, 0.0, 0
    for row in rows:
        if "updates_per_s" in row:
            elapsed += (row["step"] - previous) / row["fps"]
            previous = row["step"]
            clock[row["step"]] = elapsed
    return clock


def first_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first env step whose eval return is >= target (None if never)."""
    return next((step for step, ret in curve if ret >= target), None)


def sheeprl_seconds_to_target(estimate: dict[str, float]) -> float:
    """sheeprl's estimated training time to the target: its gradient steps over its rate.

    >>> sheeprl_seconds_to_target({"env_steps_to_target": 8000, "learning_starts": 512,
    ...                            "replay_ratio": 0.5, "grad_steps_per_s": 0.65})
    5760.0
    """
    grad_steps = (estimate["env_steps_to_target"] - estimate["learning_starts"]) * estimate["replay_ratio"]
    return round(grad_steps / estimate["grad_steps_per_s"], 1)


def compare_with_sheeprl(
    seeds: list[dict[str, Any]], target: float, estimate: dict[str, float]
) -> dict[str, Any]:
    """Our wall-clock time to ``target`` per seed against sheeprl's estimated time.

    ``speedup`` is sheeprl's seconds over ours (None for a seed that never reached the
    target); ``speedup_slowest_seed`` uses our slowest seed.
    """
    sheeprl_s = sheeprl_seconds_to_target(estimate)
    ours: dict[int, float | None] = {}
    for s in seeds:
        step = first_reach(s["eval_curve"], target)
        ours[s["seed"]] = None if step is None else round(dict(s["eval_wall_s"])[step], 1)
    reached = [t for t in ours.values() if t is not None]
    slowest = max(reached) if len(reached) == len(ours) else None
    return {
        "sheeprl_s_to_target": sheeprl_s,
        "sheeprl_estimate": {**estimate, "note": ESTIMATE_NOTE},
        "ours_s_to_target": ours,
        "speedup": {seed: None if t is None else round(sheeprl_s / t, 2) for seed, t in ours.items()},
        "speedup_slowest_seed": None if slowest is None else round(sheeprl_s / slowest, 2),
    }


def report(env: str, target: float, sheeprl_grad_steps_per_s: float | None = None,
           target_label: str | None = None, tag: str = "") -> dict[str, Any]:
    """Merge the per-seed files of ``env`` (of the variant ``tag``, if any) into one summary
    JSON and a plot.

    ``target_label`` names the target's line in the plot (default ``target <value>``), e.g.
    a published score used as a reference where the issue sets no target.

    ``sheeprl_grad_steps_per_s`` replaces the documented sheeprl rate (e.g. one measured
    with ``benches.control.peer``) in the time-to-target comparison.
    """
    stem = results_stem(env, tag)
    seeds = [json.loads(p.read_text()) for p in sorted(RESULTS.glob(f"{stem}_seed*.json"))]
    if not seeds:
        raise SystemExit(f"no per-seed results {stem}_seed*.json in {RESULTS}")
    mean_curve = _mean_curve(seeds)
    summary = {
        "env": env,
        "tag": tag,
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
    summary["every_seed_reaches_target"] = all(v is not None for v in summary["steps_to_target"].values())
    summary["final_eval_mean_reaches_target"] = summary["final_eval_mean"] >= target
    if env in SHEEPRL_ESTIMATES and all("eval_wall_s" in s for s in seeds):
        estimate = dict(SHEEPRL_ESTIMATES[env])
        if sheeprl_grad_steps_per_s is not None:
            estimate["grad_steps_per_s"] = sheeprl_grad_steps_per_s
        summary["time_to_target_vs_sheeprl"] = compare_with_sheeprl(seeds, target, estimate)
    atomic_write_json(RESULTS / f"{stem}.json", summary)
    title = f"{env} ({tag})" if tag else env
    _plot(title, seeds, target, RESULTS / f"{stem}.png", target_label or f"target {target:g}")
    return summary


def _mean_curve(seeds: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """The mean over seeds of the eval return at each eval step all seeds share."""
    shared = sorted(set.intersection(*(set(dict(s["eval_curve"])) for s in seeds)))
    return [(step, float(np.mean([dict(s["eval_curve"])[step] for s in seeds]))) for step in shared]


def _plot(title: str, seeds: list[dict[str, Any]], target: float, path: Path, label: str) -> None:
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
    ax.axhline(target, color="gray", linestyle="--", label=label)
    ax.set_xlabel("env steps")
    ax.set_ylabel("greedy eval return (5 episodes)")
    ax.set_title(title)
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
    parser.add_argument("--target-label", default=None, help="the target line's label in the plot")
    parser.add_argument("--logdir", default=None)
    parser.add_argument("--tag", default="", help="a variant's name, kept apart in the results files")
    parser.add_argument("--sheeprl-grad-steps-per-s", type=float, default=None,
                        help="report: sheeprl's gradient steps/s (default: the documented 0.65)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    if args.command == "run":
        logdir = Path(args.logdir or tempfile.mkdtemp(prefix=f"arrcoc_{_slug(args.env)}_seed{args.seed}_"))
        out = run_seed(args.env, args.steps, args.seed, args.size, args.train_ratio, args.eval_every,
                       args.overrides, logdir, tag=args.tag)
        print(json.dumps({k: v for k, v in out.items() if k not in ("train_episodes", "config")}))
    else:
        summary = report(args.env, args.target, args.sheeprl_grad_steps_per_s, args.target_label, args.tag)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
