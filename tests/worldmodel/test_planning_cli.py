"""`worldmodel afford` and `worldmodel eval --planner` on a tiny trained CartPole run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from worldmodel.cli import app
from worldmodel.train import build_configs, train

TINY = [
    "model.deter=32", "model.hidden=32", "model.units=32", "model.stoch=4", "model.classes=4",
    "batch_size=4", "batch_length=8", "behavior.horizon=4", "behavior.horizon_start=4",
    "run.prefill=32", "run.log_every=16", "run.checkpoint_every=32", "run.time_limit=30",
]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("cartpole")
    train(*build_configs(TINY, env="gym:CartPole-v1", size="xs", steps=40, seed=0, train_ratio=8), logdir)
    return logdir


def test_afford_prints_ranked_affordances(run_dir) -> None:
    args = ["afford", "--logdir", str(run_dir), "--states", "2", "--every", "3", "--epistemic-weight", "0.5"]
    cli = CliRunner().invoke(app, args)
    assert cli.exit_code == 0, cli.output
    lines = cli.output.splitlines()
    assert lines[0].startswith("step 0") and lines[3].startswith("step 3")
    scores = [float(line.split("score ")[1].split()[0]) for line in lines[1:3]]
    assert scores[0] >= scores[1]  # ranked best first
    assert "epistemic" in lines[1]


def test_afford_rejects_bad_arguments(run_dir, tmp_path) -> None:
    cli = CliRunner().invoke(app, ["afford", "--logdir", str(run_dir), "--every", "0"])
    assert cli.exit_code == 2 and "every=0" in cli.output
    cli = CliRunner().invoke(app, ["afford", "--logdir", str(tmp_path)])
    assert cli.exit_code == 2 and "config.json" in cli.output


@pytest.mark.parametrize("planner", ["shooting", "mcts"])
def test_eval_with_a_planner(run_dir, planner) -> None:
    cli = CliRunner().invoke(app, ["eval", "--logdir", str(run_dir), "--episodes", "1", "--planner", planner])
    assert cli.exit_code == 0, cli.output
    result = json.loads(cli.output.strip().splitlines()[-1])
    assert result["planner"] == planner and result["return_mean"] >= 1


def test_eval_sets_planner_options_and_rejects_bad_ones(run_dir) -> None:
    args = ["eval", "--logdir", str(run_dir), "--episodes", "1", "--planner", "cem"]
    opts = ["--planner-opt", "horizon=3", "--planner-opt", "iterations=2"]
    cli = CliRunner().invoke(app, args + opts)
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output.strip().splitlines()[-1])["planner_options"] == ["horizon=3", "iterations=2"]
    cli = CliRunner().invoke(app, args + ["--planner-opt", "horizn=3"])
    assert cli.exit_code == 2 and "horizn" in cli.output and "horizon" in cli.output
    cli = CliRunner().invoke(app, args + ["--planner-opt", "num_elites=0"])
    assert cli.exit_code == 2 and "num_elites=0" in cli.output
    policy = ["eval", "--logdir", str(run_dir), "--planner-opt", "horizon=3"]
    cli = CliRunner().invoke(app, policy)
    assert cli.exit_code == 2 and "not to 'policy'" in cli.output
