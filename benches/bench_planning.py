"""Planner benchmark: decisions per second, and return of policy vs planners at equal env steps.

    .venv/bin/python benches/bench_planning.py                         # decisions/s
    .venv/bin/python benches/bench_planning.py --returns --steps 3000  # returns at equal env steps
    .venv/bin/python benches/bench_planning.py --returns --run discrete=RUN_DIR ...  # on trained runs

Speed: one ``act`` per call on a batch of one latent state of an (untrained) DreamerV3
agent of the ``xs`` preset, for a discrete (CartPole-like, 4-d vector, 2 actions) and a
continuous (Pendulum-like, 3-d vector, 1 action) agent, with every planner's default
settings. The peer is the learned actor sampling an action from the same state:
``vs_policy`` is the planner's decisions/s divided by the actor's.

Returns (``--returns``): trains one Dreamer agent per task for ``--steps`` env steps with
``worldmodel train`` (or takes trained runs, ``--run KIND=LOGDIR``, e.g. the seeds of the
control benchmark), then evaluates each checkpoint with ``worldmodel eval --planner`` for
each of policy, shooting, cem, mppi and mcts on the same evaluation seeds: every planner
acts on a model trained on exactly the same env steps.
Prints JSON and writes ``benches/results/planning.json`` (speed) or
``benches/results/planning_returns.json`` (returns, updated after every evaluation).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import torch

from worldmodel.agent import Agent
from worldmodel.checkpoint import atomic_write_json
from worldmodel.planning import PLANNERS, make_planner
from worldmodel.planning.dreamer import DreamerLatentModel
from worldmodel.presets import dreamer_config

RESULTS = Path(__file__).resolve().parent / "results" / "planning.json"
RETURNS = RESULTS.with_name("planning_returns.json")
TASKS = {
    "discrete": ("gym:CartPole-v1", {"vector": (4,)}, gym.spaces.Discrete(2)),
    "continuous": ("gym:Pendulum-v1", {"vector": (3,)}, gym.spaces.Box(-1.0, 1.0, (1,))),
}


def decisions_per_second(act, state, min_seconds: float) -> float:
    """Calls of ``act(state)`` per second, after one warm-up call, over at least ``min_seconds``."""
    act(state)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or calls < 2:
        act(state)
        calls += 1
    return calls / elapsed


@torch.no_grad()
def speed(min_seconds: float) -> dict:
    out = {}
    for kind, (_, obs_space, action_space) in TASKS.items():
        torch.manual_seed(0)
        agent = Agent(obs_space, action_space, dreamer_config("xs"))
        model = DreamerLatentModel.from_agent(agent)
        state = agent.wm.rssm.initial_state(1)
        policy_rate = decisions_per_second(model.policy_sample, state, min_seconds)
        rows = {"policy": {"decisions_per_s": policy_rate, "vs_policy": 1.0}}
        for name in PLANNERS:
            planner = make_planner(name, model)
            rate = decisions_per_second(planner.act, state, min_seconds)
            rows[name] = {"decisions_per_s": rate, "vs_policy": rate / policy_rate}
        out[kind] = rows
    return out


def compare_planners(logdir: Path, episodes: int, planner_options: list[str]) -> dict:
    """Return of the learned policy and of every planner on one trained run (same eval seeds).

    ``planner_options``: ``NAME:key=value`` settings of planner NAME (e.g. ``cem:horizon=12``).
    """
    from worldmodel.evaluate import evaluate

    rows: dict = {}
    for planner in ["policy", *PLANNERS]:
        options = [o.partition(":")[2] for o in planner_options if o.partition(":")[0] == planner]
        start = time.perf_counter()
        result = evaluate(logdir, episodes=episodes, planner=planner, planner_options=options)
        rows[planner] = {
            "return_mean": result["return_mean"],
            "return_std": result["return_std"],
            "eval_seconds": time.perf_counter() - start,
        }
        rows["env"], rows["env_steps"] = result["env"], result["env_steps"]
    return rows


def returns(steps: int, episodes: int, workdir: Path, overrides: list[str], runs: dict[str, list[Path]],
            planner_options: list[str]) -> dict:
    """Per task: train one run (unless ``runs`` gives trained ones), then `compare_planners` on each.

    With several runs per task (e.g. seeds) the task also gets ``mean`` (over runs) of each
    planner's mean return.
    """
    from worldmodel.train import build_configs, train

    out: dict = {}

    def save() -> None:  # after every run, so partial results survive a time limit
        atomic_write_json(RETURNS, {"overrides": overrides, "planner_options": planner_options,
                                    "episodes": episodes, "returns": out})

    for kind, (env, _, _) in TASKS.items():
        logdirs = runs.get(kind, [])
        if not logdirs and runs:
            continue  # only the tasks given
        rows: dict = {}
        if not logdirs:
            logdir = workdir / kind
            run_cfg, agent_cfg = build_configs(
                ["run.prefill=500", "run.log_every=500", f"run.checkpoint_every={steps}", *overrides],
                env=env, size="xs", steps=steps, seed=0, train_ratio=64,
            )
            start = time.perf_counter()
            train(run_cfg, agent_cfg, logdir)
            rows["train_seconds"] = time.perf_counter() - start
            logdirs = [logdir]
        rows["runs"] = {}
        for logdir in logdirs:
            rows["runs"][str(logdir)] = compare_planners(logdir, episodes, planner_options)
            out[kind] = rows
            save()
        rows["mean"] = {
            planner: sum(r[planner]["return_mean"] for r in rows["runs"].values()) / len(rows["runs"])
            for planner in ["policy", *PLANNERS]
        }
    save()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timing per planner")
    parser.add_argument("--returns", action="store_true", help="train and compare returns (instead of speed)")
    parser.add_argument("--steps", type=int, default=3000, help="env steps of each training run")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--workdir", default="runs/bench_planning")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run", action="append", default=[], metavar="KIND=LOGDIR",
                        help="evaluate a trained run instead of training one (KIND: discrete or continuous;"
                             " repeatable, e.g. one per seed)")
    parser.add_argument("--planner-opt", action="append", default=[], metavar="PLANNER:KEY=VALUE",
                        help="a planner setting, e.g. cem:horizon=12 (repeatable)")
    parser.add_argument("overrides", nargs="*", help="agent key=value overrides for the training runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.returns:
        runs: dict[str, list[Path]] = {}
        for item in args.run:
            kind, _, logdir = item.partition("=")
            if kind not in TASKS or not logdir:
                parser.error(f"--run expects KIND=LOGDIR with KIND in {sorted(TASKS)}, got {item!r}")
            runs.setdefault(kind, []).append(Path(logdir))
        out = returns(args.steps, args.episodes, Path(args.workdir), args.overrides, runs, args.planner_opt)
        result = {"threads": args.threads, "overrides": args.overrides, "returns": out}
    else:
        result = {"threads": args.threads, "speed": speed(args.seconds)}
        atomic_write_json(RESULTS, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
