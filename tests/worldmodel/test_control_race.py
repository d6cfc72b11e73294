"""The time-to-target race against sheeprl: windows of training episodes, stopping sheeprl, the verdict."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from benches.control.peer import sheeprl_command
from benches.control.race import main, sheeprl_to_target, verdict, window_means

FAKE_SHEEPRL = """#!{python}
# Stands in for sheeprl: prints its first episode, logs Rewards/rew_avg at env steps 100, 200, 300,
# then idles.
import time
from torch.utils.tensorboard import SummaryWriter

print("Rank-0: policy_step=20, reward_env_0=20.0", flush=True)

writer = SummaryWriter("logs/runs/fake/version_0")
for step, value in ((100, 20.0), (200, 300.0), (300, 480.0)):
    writer.add_scalar("Rewards/rew_avg", value, step)
    writer.flush()
    time.sleep(0.2)
time.sleep(60)
"""


@pytest.fixture
def fake_sheeprl(tmp_path: Path) -> str:
    path = tmp_path / "sheeprl"
    path.write_text(FAKE_SHEEPRL.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_window_means_average_the_episodes_ended_since_the_previous_point():
    episodes = [(120, 10.0), (480, 30.0), (500, 50.0), (900, 475.0), (1400, 500.0)]
    # (0, 500]: 10, 30, 50 -> 30; (500, 1000]: 475; (1000, 1500]: 500; nothing ended in (1500, 2000]
    assert window_means(episodes, [500, 1000, 1500, 2000]) == [(500, 30.0), (1000, 475.0), (1500, 500.0)]


def test_verdict_is_a_ratio_when_sheeprl_arrives_and_a_bound_when_it_does_not():
    assert verdict(200.0, {"s_to_target": 700.0, "budget_s": 1000.0}, 5) == {
        "speedup": 3.5, "speedup_at_least": None, "goal_met": False}
    assert verdict(200.0, {"s_to_target": None, "budget_s": 1000.0}, 5) == {
        "speedup": None, "speedup_at_least": 5.0, "goal_met": True}


def test_sheeprl_command_uses_the_documented_settings():
    command = sheeprl_command("sheeprl", 50_000, 512, 0.5, 500, threads=1)
    for setting in ("algo=dreamer_v3_XS", "algo.replay_ratio=0.5", "algo.learning_starts=512",
                    "algo.per_rank_batch_size=16", "algo.per_rank_sequence_length=64", "env.id=CartPole-v1",
                    "metric.log_every=500", "algo.total_steps=50000", "num_threads=1"):
        assert setting in command


def test_sheeprl_is_stopped_once_it_reaches_the_target(fake_sheeprl, tmp_path):
    out = sheeprl_to_target(fake_sheeprl, 475.0, 30.0, 1000, 100, 1, tmp_path, poll_s=0.2)
    assert out["step_to_target"] == 300 and out["s_to_target"] is not None and out["s_to_target"] < 30
    assert out["stopped"] and out["max_rew_avg"] == pytest.approx(480.0)


def test_sheeprl_is_stopped_at_its_budget_without_reaching_the_target(fake_sheeprl, tmp_path):
    out = sheeprl_to_target(fake_sheeprl, 500.0, 3.0, 1000, 100, 1, tmp_path, poll_s=0.2)
    assert out["stopped"] and out["s_to_target"] is None and out["step_to_target"] is None
    assert [step for step, _, _ in out["rewards"]] == [100, 200, 300]
    # the clock starts at the first finished episode: every log point is within the first seconds
    assert 0 <= out["startup_s"] < 10 and all(t < 3.0 for _, t, _ in out["rewards"])


def test_a_missing_sheeprl_is_reported_before_our_run_starts(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["race", "--sheeprl", str(tmp_path / "no-sheeprl")])
    with pytest.raises(SystemExit, match="sheeprl not found"):
        main()
