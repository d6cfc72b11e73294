"""benches.control.planned: the greedy actor against a planner on the kept checkpoints of runs."""

from __future__ import annotations

import json

import pytest

from benches.control.planned import main, mean_over_seeds
from worldmodel.evaluate import evaluate
from worldmodel.train import build_configs, train

TINY = [
    "model.deter=32", "model.hidden=32", "model.units=32", "model.stoch=4", "model.classes=4",
    "batch_size=4", "batch_length=8", "behavior.horizon=4", "behavior.horizon_start=4",
    "run.prefill=32", "run.checkpoint_every=32", "run.keep_checkpoints=true",
]


def _row(step: int, policy: float, planner: float) -> dict:
    return {"env_steps": step, "policy": {"mean": policy}, "planner": {"mean": planner}}


def test_mean_over_seeds_keeps_the_steps_every_seed_reached():
    per_seed = {"0": [_row(10, 1.0, 3.0), _row(20, 2.0, 2.0)], "1": [_row(10, 3.0, 5.0)]}
    assert mean_over_seeds(per_seed) == [{"env_steps": 10, "policy": 2.0, "planner": 4.0, "seeds": 2}]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("planned")
    dirs = []
    for seed in (0, 1):
        cfgs = build_configs(TINY, env="gym:CartPole-v1", size="xs", steps=64, seed=seed, train_ratio=8)
        train(*cfgs, root / f"seed{seed}")
        dirs.append(root / f"seed{seed}")
    return root, dirs


def test_policy_and_planner_on_the_same_kept_checkpoints(runs):
    root, dirs = runs
    out = root / "planned.json"
    argv = [*map(str, dirs), "--planner", "shooting", "--planner-opt", "num_samples=16",
            "--episodes", "1", "--out", str(out)]
    summary = main(argv)
    assert json.loads(out.read_text()) == summary
    assert summary["env"] == "gym:CartPole-v1" and summary["planner_options"] == ["num_samples=16"]
    assert [r["env_steps"] for r in summary["per_seed"]["1"]] == [32, 64]
    assert [r["env_steps"] for r in summary["mean"]] == [32, 64] and summary["mean"][0]["seeds"] == 2
    kept = dirs[1] / "checkpoints" / "step_32.safetensors"
    row = summary["per_seed"]["1"][0]
    assert row["policy"]["mean"] == evaluate(dirs[1], episodes=1, checkpoint=kept)["return_mean"]
    planned = evaluate(dirs[1], episodes=1, planner="shooting", planner_options=["num_samples=16"],
                       checkpoint=kept)
    assert row["planner"]["mean"] == planned["return_mean"]
    only = main([*argv, "--steps", "64"])
    assert [r["env_steps"] for r in only["per_seed"]["0"]] == [64]
    both = main([*argv, "--steps", "32,64", "--workers", "2"])  # two processes: the same numbers

    def returns(s: dict) -> list:
        return [(r["env_steps"], r["policy"], r["planner"]) for r in s["per_seed"]["1"]]

    assert returns(both) == returns(summary)


def test_bad_runs_are_named(runs, tmp_path):
    _, dirs = runs
    with pytest.raises(SystemExit, match=r"no kept checkpoint at env steps \[48\] \(kept: 32, 64\)"):
        main([str(dirs[0]), "--steps", "48", "--out", str(tmp_path / "o.json")])
    with pytest.raises(SystemExit, match="same seed"):
        main([str(dirs[0]), str(dirs[0]), "--out", str(tmp_path / "o.json")])
    with pytest.raises(SystemExit, match="not a run directory"):
        main([str(tmp_path), "--out", str(tmp_path / "o.json")])
    for bad in (["--episodes", "0"], ["--steps", "20k"]):
        with pytest.raises(SystemExit):
            main([str(dirs[0]), *bad])
    assert not (tmp_path / "o.json").exists()
