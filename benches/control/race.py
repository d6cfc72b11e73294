"""Wall-clock time to a return target against sheeprl, in one invocation.

    python -m benches.control.race --target 475 --factor 5

Issue #7's goal: at least ``factor``x less wall-clock time than sheeprl 0.8.4 DreamerV3 to
reach CartPole-v1 ``target`` with this project's recommended preset. One process runs,
one after the other and at the same thread count:

1. this project's runner with the recommended preset (`learning.RECOMMENDED`, ``tiny``)
   for up to ``--steps`` env steps, greedy evaluations every ``--eval-every`` steps and a
   metrics row every ``--log-every`` steps;
2. sheeprl DreamerV3-XS with the settings of ../shared/docs/environment.md (batch 16 x 64,
   ``replay_ratio`` 0.5, 512 learning starts), stopped once it reaches the target or once
   it has trained for ``factor`` times our time.

Both are judged on the one metric both tools log: the mean return of the *training*
episodes that ended since the previous log point (sheeprl's ``Rewards/rew_avg``; our
``episode/return`` rows), first >= target. Our greedy-evaluation time to the target is
reported beside it. Both clocks start after start-up: ours is the runner's training clock
(`learning.training_clock`: random prefill, updates and our greedy evaluations included;
imports and building the agent not), sheeprl's runs from its first finished episode
(imports, Hydra and building its model and env not counted). If sheeprl has not reached
the target within its budget, the speed-up is at least ``factor`` (``speedup_at_least``).
Writes ``benches/results/control_race.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benches.control.learning import RESULTS, first_reach, run_seed, training_clock
from benches.control.peer import sheeprl_command, sheeprl_scalars
from worldmodel.checkpoint import atomic_write_json
from worldmodel.run import read_metrics

ENV = "gym:CartPole-v1"
MAX_STARTUP_S = 600.0  # sheeprl that has not finished an episode by then is stopped
SHEEPRL_SETTINGS = {"algo": "dreamer_v3_XS", "batch": "16x64", "replay_ratio": 0.5, "learning_starts": 512}


def window_means(episodes: list[tuple[int, float]], points: list[int]) -> list[tuple[int, float]]:
    """Mean return of the episodes that ended in ``(previous point, point]``, per log point.

    ``episodes`` are ``(env step at its end, return)``; points without an ended episode
    are left out.

    >>> window_means([(10, 1.0), (20, 3.0), (35, 5.0)], [20, 30, 40])
    [(20, 2.0), (40, 5.0)]
    """
    out, previous = [], 0
    for point in points:
        done = [ret for step, ret in episodes if previous < step <= point]
        if done:
            out.append((point, sum(done) / len(done)))
        previous = point
    return out


def ours_to_target(target: float, steps: int, eval_every: int, log_every: int, threads: int,
                   logdir: Path) -> dict[str, Any]:
    """Our recommended preset until ``steps``; its times to the target by both criteria."""
    run = run_seed(ENV, steps, 0, None, None, eval_every,
                   [f"run.log_every={log_every}", f"run.threads={threads}"], logdir, write=False)
    rows = read_metrics(logdir)
    clock = training_clock(rows)
    train_curve = window_means(
        [(r["step"], r["episode/return"]) for r in rows if "episode/return" in r], sorted(clock)
    )
    train_step = first_reach(train_curve, target)
    eval_step = first_reach(run["eval_curve"], target)
    return {
        "size": run["config"]["run"]["size"], "train_curve": train_curve, "eval_curve": run["eval_curve"],
        "train_episodes_step_to_target": train_step,
        "train_episodes_s_to_target": None if train_step is None else round(clock[train_step], 1),
        "greedy_eval_step_to_target": eval_step,
        "greedy_eval_s_to_target": (
            None if eval_step is None else round(dict(run["eval_wall_s"])[eval_step], 1)
        ),
        "updates_per_s": run["updates_per_s"],
    }


def read_rewards(workdir: Path, launched: float) -> list[tuple[int, float, float]]:
    """sheeprl's ``(env step, seconds since launch, Rewards/rew_avg)`` log points."""
    return [(e.step, e.wall_time - launched, e.value) for e in sheeprl_scalars(workdir, "Rewards/rew_avg")]


def first_episode_seconds(log: Path, launched: float) -> float | None:
    """Seconds from launch until sheeprl printed its first finished episode (its start-up:
    imports, Hydra, Fabric, building the model and the env), None before that."""
    if "policy_step=" in log.read_text(errors="replace"):
        return time.time() - launched
    return None


def sheeprl_to_target(sheeprl: str, target: float, budget_s: float, steps: int, log_every: int,
                      threads: int, workdir: Path, poll_s: float = 5.0) -> dict[str, Any]:
    """Run sheeprl until its training episodes reach ``target`` or it has trained for
    ``budget_s`` seconds after its start-up; checked every ``poll_s`` seconds, then SIGINT.

    Times are seconds of training: since launch, less the start-up (`first_episode_seconds`).
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = workdir / "sheeprl.log"  # a file, not a pipe: a full pipe would stall sheeprl
    launched = time.time()
    with log.open("w") as sink:
        command = sheeprl_command(sheeprl, steps, SHEEPRL_SETTINGS["learning_starts"],
                                  SHEEPRL_SETTINGS["replay_ratio"], log_every, threads)
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=sink, stderr=subprocess.STDOUT)
    startup = None
    try:
        while proc.poll() is None:
            time.sleep(poll_s if startup is not None else min(poll_s, 0.25))
            startup = startup if startup is not None else first_episode_seconds(log, launched)
            if startup is None:
                if time.time() - launched > MAX_STARTUP_S:
                    break
                continue
            points = read_rewards(workdir, launched)
            if any(v >= target for _, _, v in points) or time.time() - launched - startup >= budget_s:
                break
    finally:
        stopped = proc.poll() is None
        if stopped:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if not stopped and proc.returncode != 0:
        raise RuntimeError(f"sheeprl failed ({proc.returncode}): {log.read_text()[-2000:]}")
    startup = startup or 0.0
    # the start-up is detected up to one poll late: a first log point may precede it
    points = [(s, max(0.0, t - startup), v) for s, t, v in read_rewards(workdir, launched)]
    reached = next((p for p in points if p[2] >= target and p[1] <= budget_s), None)
    return {
        "settings": SHEEPRL_SETTINGS, "budget_s": round(budget_s, 1), "startup_s": round(startup, 1),
        "stopped": stopped, "rewards": [(s, round(t, 1), round(v, 2)) for s, t, v in points],
        "s_to_target": None if reached is None else round(reached[1], 1),
        "step_to_target": None if reached is None else reached[0],
        "max_rew_avg": max((v for _, _, v in points), default=None),
        "last_step": points[-1][0] if points else None,
    }


def verdict(t_ours: float, peer: dict[str, Any], factor: float) -> dict[str, Any]:
    """``speedup`` (sheeprl's training seconds to the target over ours) when sheeprl reached
    it; otherwise ``speedup_at_least``, its training budget over our time; ``goal_met``.

    >>> verdict(100.0, {"s_to_target": 800.0, "budget_s": 500.0}, 5)
    {'speedup': 8.0, 'speedup_at_least': None, 'goal_met': True}
    >>> verdict(100.0, {"s_to_target": None, "budget_s": 500.0}, 5)
    {'speedup': None, 'speedup_at_least': 5.0, 'goal_met': True}
    """
    if peer["s_to_target"] is not None:
        speedup = round(peer["s_to_target"] / t_ours, 2)
        return {"speedup": speedup, "speedup_at_least": None, "goal_met": speedup >= factor}
    bound = round(peer["budget_s"] / t_ours, 2)
    return {"speedup": None, "speedup_at_least": bound, "goal_met": bound >= factor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--factor", type=float, default=5.0, help="sheeprl's budget in multiples of our time")
    parser.add_argument("--steps", type=int, default=10_000, help="our env steps (sheeprl: 5x)")
    parser.add_argument("--eval-every", type=int, default=1_000)
    parser.add_argument("--log-every", type=int, default=500, help="env steps between log points (both)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sheeprl", default=os.environ.get("SHEEPRL", "/tmp/venv_sheep/bin/sheeprl"))
    args = parser.parse_args()
    if shutil.which(args.sheeprl) is None:  # before our run, not after it
        raise SystemExit(f"sheeprl not found at {args.sheeprl}: install it in its own venv "
                         "(docs/control.md, 'Benchmarks') or pass --sheeprl / set SHEEPRL")
    with tempfile.TemporaryDirectory() as tmp:
        ours = ours_to_target(args.target, args.steps, args.eval_every, args.log_every, args.threads,
                              Path(tmp) / "ours")
        if ours["train_episodes_s_to_target"] is None:
            raise SystemExit(f"our run did not reach {args.target} in {args.steps} env steps: "
                             f"{ours['train_curve']}")
        budget = args.factor * ours["train_episodes_s_to_target"]
        peer = sheeprl_to_target(args.sheeprl, args.target, budget, 5 * args.steps, args.log_every,
                                 args.threads, Path(tmp))
    out = {
        "env": ENV, "target": args.target, "factor": args.factor, "threads": args.threads,
        "ours": ours, "sheeprl": peer, **verdict(ours["train_episodes_s_to_target"], peer, args.factor),
    }
    atomic_write_json(RESULTS / "control_race.json", out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
