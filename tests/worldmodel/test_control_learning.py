"""The control learning benchmark's bookkeeping: the training clock, time to target, sheeprl estimate."""

from __future__ import annotations

import pytest

from benches.control.learning import (
    SHEEPRL_ESTIMATES,
    compare_with_sheeprl,
    first_reach,
    sheeprl_seconds_to_target,
    training_clock,
)


def test_training_clock_sums_the_logged_intervals():
    # 1000 steps at 100 fps (10 s), then 1000 steps at 50 fps (20 s); episode and eval rows
    # carry no speed and are skipped.
    rows = [
        {"step": 640, "episode/return": 20.0},
        {"step": 1000, "fps": 100.0, "updates_per_s": 0.0, "updates": 0},
        {"step": 1000, "eval/return": 9.0},
        {"step": 2000, "fps": 50.0, "updates_per_s": 4.0, "updates": 125},
    ]
    assert training_clock(rows) == {1000: pytest.approx(10.0), 2000: pytest.approx(30.0)}


def test_first_reach_is_the_first_eval_at_or_above_target():
    curve = [(1000, 20.0), (2000, 475.0), (3000, 300.0), (4000, 500.0)]
    assert first_reach(curve, 475.0) == 2000
    assert first_reach(curve, 501.0) is None


def test_sheeprl_estimate_from_the_documented_numbers():
    # (8000 - 512) * 0.5 = 3744 gradient steps at 0.65 steps/s
    assert sheeprl_seconds_to_target(SHEEPRL_ESTIMATES["gym:CartPole-v1"]) == pytest.approx(5760.0)


def test_compare_with_sheeprl_per_seed_and_slowest_seed():
    estimate = {"env_steps_to_target": 2512, "learning_starts": 512, "replay_ratio": 0.5,
                "grad_steps_per_s": 1.0}
    seeds = [
        {"seed": 0, "eval_curve": [(1000, 100.0), (2000, 480.0)],
         "eval_wall_s": [(1000, 50.0), (2000, 100.0)]},
        {"seed": 1, "eval_curve": [(1000, 490.0), (2000, 300.0)],
         "eval_wall_s": [(1000, 40.0), (2000, 90.0)]},
    ]
    out = compare_with_sheeprl(seeds, 475.0, estimate)
    assert out["sheeprl_s_to_target"] == pytest.approx(1000.0)
    assert out["ours_s_to_target"] == {0: 100.0, 1: 40.0}
    assert out["speedup"] == {0: 10.0, 1: 25.0}
    assert out["speedup_slowest_seed"] == pytest.approx(10.0)
    assert "not run to the target" in out["sheeprl_estimate"]["note"]
    seeds[1]["eval_curve"] = [(1000, 10.0), (2000, 20.0)]
    out = compare_with_sheeprl(seeds, 475.0, estimate)
    assert out["speedup"][1] is None and out["speedup_slowest_seed"] is None


def test_run_seed_speed_counts_the_whole_training_clock(tmp_path, monkeypatch):
    """A resumed seed's JSON reports updates/s over all its training time, not this process's."""
    from benches.control import learning

    rows = [
        {"step": 1000, "fps": 100.0, "updates_per_s": 0.0, "updates": 0},  # 10 s before a resume
        {"step": 1000, "eval/return": 9.0},
        {"step": 2000, "fps": 50.0, "updates_per_s": 4.0, "updates": 120},  # 20 s after it
        {"step": 2000, "eval/return": 30.0},
    ]
    monkeypatch.setattr(learning, "train", lambda run_cfg, agent_cfg, logdir: {"updates": 120})
    monkeypatch.setattr(learning, "read_metrics", lambda logdir: rows)
    monkeypatch.setattr(learning, "RESULTS", tmp_path)
    out = learning.run_seed("gym:CartPole-v1", 2000, 0, "tiny", None, 1000, ["run.eval_episodes=2"], tmp_path)
    assert out["train_wall_s"] == pytest.approx(30.0) and out["updates_per_s"] == pytest.approx(4.0)
    assert out["eval_curve"] == [(1000, 9.0), (2000, 30.0)]
    assert out["config"]["run"]["eval_episodes"] == 2 and out["config"]["run"]["checkpoint_every"] == 1000
    assert (tmp_path / "control_gym_cartpole_v1_seed0.json").is_file()


def test_a_tagged_variant_keeps_its_own_files_and_summary(tmp_path, monkeypatch):
    from benches.control import learning

    rows = [{"step": 1000, "fps": 100.0, "updates_per_s": 4.0, "updates": 40},
            {"step": 1000, "eval/return": 9.0}]
    monkeypatch.setattr(learning, "train", lambda run_cfg, agent_cfg, logdir: {"updates": 40})
    monkeypatch.setattr(learning, "read_metrics", lambda logdir: rows)
    monkeypatch.setattr(learning, "RESULTS", tmp_path)
    args = ("gym:CartPole-v1", 1000, 0, "tiny", None, 1000, [], tmp_path)
    learning.run_seed(*args)
    rows[1]["eval/return"] = 20.0
    learning.run_seed(*args, tag="dyn-1")
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "control_gym_cartpole_v1_dyn-1_seed0.json", "control_gym_cartpole_v1_seed0.json"]
    plain = learning.report("gym:CartPole-v1", 15.0)
    tagged = learning.report("gym:CartPole-v1", 15.0, tag="dyn-1")
    assert (plain["final_eval_mean"], plain["tag"]) == (9.0, "")
    assert (tagged["final_eval_mean"], tagged["tag"]) == (20.0, "dyn-1")
    assert (tmp_path / "control_gym_cartpole_v1_dyn-1.png").is_file()
    for bad in ("Dyn", "seed-2", "a b", "../x"):
        with pytest.raises(SystemExit, match="--tag"):
            learning.run_seed(*args, tag=bad)
    with pytest.raises(SystemExit, match="no per-seed results control_gym_cartpole_v1_other_seed"):
        learning.report("gym:CartPole-v1", 15.0, tag="other")
