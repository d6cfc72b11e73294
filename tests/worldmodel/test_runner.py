"""The training runner and evaluation: outputs, exact resume, config checks, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from worldmodel.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from worldmodel.cli import app
from worldmodel.config import ConfigError
from worldmodel.envs import EnvBatch
from worldmodel.evaluate import evaluate
from worldmodel.replay import Replay
from worldmodel.run import read_metrics
from worldmodel.train import CHECKPOINT, build_configs, train

TINY = [
    "model.deter=32", "model.hidden=32", "model.units=32", "model.stoch=4", "model.classes=4",
    "model.cnn_depth=4", "batch_size=4", "batch_length=8", "behavior.horizon=4", "behavior.horizon_start=4",
    "run.prefill=32", "run.log_every=16", "run.checkpoint_every=32",
]


def _configs(steps: int, *extra: str):
    # train ratio 8 with 4 x 8 batches: one update every 4 env steps after prefill
    return build_configs(
        [*TINY, *extra], env="gym:CartPole-v1", size="xs", steps=steps, seed=0, train_ratio=8
    )


def test_run_writes_config_metrics_tensorboard_and_checkpoint(tmp_path):
    result = train(*_configs(64), tmp_path)
    assert result["env_steps"] == 64 and result["updates"] == 8
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["run"]["env"] == "gym:CartPole-v1" and config["agent"]["train_ratio"] == 8.0
    rows = read_metrics(tmp_path)
    episodes = [r for r in rows if "episode/return" in r]
    assert episodes and all(r["episode/length"] == r["episode/return"] for r in episodes)  # CartPole: +1/step
    logs = [r for r in rows if "updates_per_s" in r]
    assert [r["step"] for r in logs] == [16, 32, 48, 64]
    assert logs[-1]["updates"] == 8 and logs[-1]["fps"] > 0
    assert any("loss" in key for key in logs[-1]), "agent update metrics are logged"
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())
    state, meta = load_checkpoint(tmp_path / CHECKPOINT)
    assert state["counters"]["env_steps"] == 64 and meta["config"] == config


def test_interrupted_run_resumes_from_its_checkpoint_with_the_same_buffer(tmp_path, monkeypatch):
    run_cfg, agent_cfg = _configs(64)
    step, calls = EnvBatch.step, []

    def crashing_step(self, action):
        calls.append(1)
        if len(calls) > 44:  # after the checkpoint at env step 32
            raise KeyboardInterrupt
        return step(self, action)

    monkeypatch.setattr(EnvBatch, "step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        train(run_cfg, agent_cfg, tmp_path)
    monkeypatch.setattr(EnvBatch, "step", step)
    state, _ = load_checkpoint(tmp_path / CHECKPOINT)
    assert state["counters"]["env_steps"] == 32 and state["counters"]["updates"] == 0
    saved = Replay.load(tmp_path / "replay")
    assert saved.count.tolist() == [32]
    snapshot = {k: np.array(v[:, :32]) for k, v in saved.arrays.items()}
    saved.count += 5  # as if killed after a replay flush but before the checkpoint was renamed
    saved.save()

    seen = {}
    load = Replay.load.__func__

    def spying_load(cls, directory):
        replay = load(cls, directory)
        seen["count"] = replay.count.tolist()
        seen["arrays"] = {k: np.array(v[:, :32]) for k, v in replay.arrays.items()}
        return replay

    monkeypatch.setattr(Replay, "load", classmethod(spying_load))
    result = train(run_cfg, agent_cfg, tmp_path)  # the same command again
    assert seen["count"] == [37]
    for key, value in snapshot.items():
        np.testing.assert_array_equal(seen["arrays"][key], value)
    assert result["env_steps"] == 64 and result["updates"] == 8
    # the first rates after the resume count from the checkpoint (env step 32, 0 updates), not from 0
    first = [r for r in read_metrics(tmp_path) if "fps" in r and r["step"] == 48][-1]
    assert first["updates_per_s"] / first["fps"] == pytest.approx(first["updates"] / (48 - 32))
    final = Replay.load(tmp_path / "replay")
    assert final.count.tolist() == [64], "the checkpoint, not replay.json, decides the buffer size"
    np.testing.assert_array_equal(np.array(final.arrays["vector"][:, :32]), snapshot["vector"])
    assert np.array(final.arrays["is_first"][0, 32]), "the resumed run starts a new episode"


def test_resume_with_a_different_config_names_the_keys(tmp_path):
    train(*_configs(32), tmp_path)
    with pytest.raises(CheckpointError, match="agent.model.deter: checkpoint=32 current=48"):
        train(*_configs(32, "model.deter=48"), tmp_path)
    result = train(*_configs(40), tmp_path)  # a longer run of the same config is fine
    assert result["env_steps"] == 40
    state, meta = load_checkpoint(tmp_path / CHECKPOINT)  # a checkpoint from before run.life_loss
    del meta["config"]["run"]["life_loss"]
    save_checkpoint(tmp_path / CHECKPOINT, state, meta)
    assert train(*_configs(48), tmp_path)["env_steps"] == 48
    with pytest.raises(CheckpointError, match="run.life_loss: checkpoint=False current=True"):
        train(*_configs(56, "run.life_loss=true"), tmp_path)
    state, meta = load_checkpoint(tmp_path / CHECKPOINT)  # and from before agent.precision
    del meta["config"]["agent"]["precision"]
    save_checkpoint(tmp_path / CHECKPOINT, state, meta)
    assert train(*_configs(56), tmp_path)["env_steps"] == 56
    # precision is an execution choice: a float32 run may resume in bfloat16
    assert train(*_configs(64, "precision=bfloat16"), tmp_path)["env_steps"] == 64


def test_bad_run_settings_raise_config_errors():
    with pytest.raises(ConfigError, match="run.prefill=4 must be at least"):
        _configs(64, "run.prefill=4")
    with pytest.raises(ConfigError, match="unknown config key 'num_env'"):
        _configs(64, "run.num_env=2")


def test_eval_prints_mean_and_std_and_rejects_unknown_planners(tmp_path):
    train(*_configs(32), tmp_path)
    result = evaluate(tmp_path, episodes=2)
    assert result["episodes"] == 2 and result["env_steps"] == 32
    assert result["return_mean"] >= 8 and result["return_std"] >= 0
    cli = CliRunner().invoke(app, ["eval", "--logdir", str(tmp_path), "--episodes", "2"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output.strip().splitlines()[-1])["return_mean"] == result["return_mean"]
    cli = CliRunner().invoke(app, ["eval", "--logdir", str(tmp_path), "--planner", "cme"])
    assert cli.exit_code == 2 and "unknown planner 'cme'; choose one of policy" in cli.output
    video = tmp_path / "cartpole.mp4"  # gym envs without image observations are rendered
    args = ["eval", "--logdir", str(tmp_path), "--episodes", "1", "--video", str(video)]
    cli = CliRunner().invoke(app, args)
    assert cli.exit_code == 0, cli.output
    assert video.stat().st_size > 1000


def test_eval_of_an_earlier_checkpoint_copy_and_refusal_of_another_runs(tmp_path):
    run, other = tmp_path / "run", tmp_path / "other"
    train(*_configs(32), run)
    early = tmp_path / "early.safetensors"
    early.write_bytes((run / CHECKPOINT).read_bytes())
    train(*_configs(64, "run.keep_checkpoints=true"), run)  # switched on when resuming
    assert evaluate(run, episodes=1)["env_steps"] == 64
    assert evaluate(run, episodes=1, checkpoint=early)["env_steps"] == 32
    train(*_configs(96, "run.keep_checkpoints=true"), run)
    kept = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
    assert kept == ["step_64.safetensors", "step_96.safetensors"]  # each kept as it was written
    assert evaluate(run, episodes=1, checkpoint=run / "checkpoints" / kept[0])["env_steps"] == 64
    args = ["eval", "--logdir", str(run), "--episodes", "1", "--checkpoint", str(early)]
    cli = CliRunner().invoke(app, args)
    assert cli.exit_code == 0 and json.loads(cli.output.strip().splitlines()[-1])["env_steps"] == 32
    train(*_configs(32, "model.units=16"), other)
    with pytest.raises(CheckpointError, match="agent.model.units: checkpoint=16 current=32"):
        evaluate(run, episodes=1, checkpoint=other / CHECKPOINT)
    cli = CliRunner().invoke(app, ["eval", "--logdir", str(run), "--checkpoint", str(tmp_path / "none")])
    assert cli.exit_code == 2 and "none" in cli.output


def test_train_cli_reports_unknown_tasks_readably(tmp_path):
    cli = CliRunner().invoke(app, ["train", "--env", "gym:CartPol-v1", "--logdir", str(tmp_path / "r")])
    assert cli.exit_code == 2 and "Closest: CartPole-v1" in cli.output


@pytest.mark.slow
def test_train_and_eval_with_video_on_an_image_suite(tmp_path):
    args = ["train", "--env", "crafter:reward", "--steps", "40", "--train-ratio", "8", "--logdir",
            str(tmp_path), *TINY, "run.time_limit=20"]
    cli = CliRunner().invoke(app, args)
    assert cli.exit_code == 0, cli.output
    result = evaluate(tmp_path, episodes=1, video=tmp_path / "episode.mp4")
    assert result["length_mean"] == 20
    assert (tmp_path / "episode.mp4").stat().st_size > 1000
