"""Recorded episodes (worldmodel.vmc.rollouts) and held-out evaluation of a saved V-M-C run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from vmc_fakes import FakeEnv, source_run

from worldmodel.checkpoint import CheckpointError
from worldmodel.vmc.evaluate import HELDOUT_SEED_OFFSET, build_run, evaluate_run, load_source, mean_ci
from worldmodel.vmc.pipeline import EVAL_SEED_OFFSET, evaluate_real
from worldmodel.vmc.rollouts import record_episode

ROOT = Path(__file__).resolve().parents[2]


def test_record_episode_calls_the_policy_once_per_step_and_stops_at_max_steps() -> None:
    seen = []

    def policy(frame: np.ndarray) -> np.ndarray:
        seen.append(int(frame[0, 0, 0]))
        return np.array([0.5], np.float32)

    ep = record_episode(FakeEnv(), seed=3, max_steps=5, policy=policy)
    assert ep["frames"].shape == (6, 64, 64, 3) and ep["actions"].shape == (5, 1)
    assert seen == [128, 158, 188, 218, 248]  # each call sees the frame its action is taken from
    assert ep["rewards"].tolist() == [0.5] * 5 and ep["dones"].tolist() == [0.0] * 5
    full = record_episode(FakeEnv(), seed=3, max_steps=100, policy=policy)
    assert len(full["actions"]) == FakeEnv.max_steps and full["dones"][-1] == 1.0  # the env's end


def test_evaluate_run_plays_the_saved_controller_on_held_out_seeds(tmp_path, one_thread) -> None:
    src = source_run(tmp_path)
    summary = evaluate_run(src, episodes=3, env=FakeEnv())
    assert summary["seeds"] == {"first": HELDOUT_SEED_OFFSET, "count": 3}
    run = build_run(*load_source(src), FakeEnv())
    models = (FakeEnv(), run.vae, run.mdn, run.controller)
    assert summary["returns"]["controller"] == evaluate_real(*models, run.params, 3, HELDOUT_SEED_OFFSET)
    random = evaluate_real(*models, None, 3, HELDOUT_SEED_OFFSET)
    assert summary["returns"]["random_policy"] == random
    assert random != evaluate_real(*models, None, 3, EVAL_SEED_OFFSET)  # not the run's eval seeds
    assert summary["real_return"]["n"] == 3 and summary["config"]["env"] == "fake"
    lo, hi = summary["ci95"]["controller"]
    assert min(summary["returns"]["controller"]) <= lo <= summary["real_return"]["mean"] <= hi
    with pytest.raises(ValueError, match="episodes >= 1"):
        evaluate_run(src, episodes=0, env=FakeEnv())


def test_mean_ci_brackets_the_mean_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.normal(5.0, 2.0, 20), rng.normal(5.0, 2.0, 2000)
    lo, hi = mean_ci(small)
    assert lo < small.mean() < hi and mean_ci([3.0, 3.0, 3.0]) == [3.0, 3.0]
    lo2, hi2 = mean_ci(large)
    assert hi2 - lo2 < (hi - lo) / 5  # about 1 / sqrt(100) as wide
    assert hi2 - lo2 == pytest.approx(2 * 1.96 * large.std() / np.sqrt(2000), rel=0.1)  # normal theory


def test_vmc_eval_script_names_a_missing_run(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no V-M-C run at"):
        evaluate_run(tmp_path / "nowhere", episodes=1, env=FakeEnv())
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vmc_eval.py"), "--logdir", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and done.stderr.startswith("vmc_eval: no V-M-C run at")
    assert "Traceback" not in done.stderr
