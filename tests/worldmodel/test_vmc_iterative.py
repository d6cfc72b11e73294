"""Iterative training of a V-M-C run (worldmodel.vmc.iterative) and CMA-ES warm starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from vmc_fakes import FakeEnv, source_run

from worldmodel.checkpoint import CheckpointError, load_checkpoint
from worldmodel.vmc import DreamConfig
from worldmodel.vmc import iterative as it
from worldmodel.vmc.cmaes import evolve
from worldmodel.vmc.rollouts import load_rollouts

ROOT = Path(__file__).resolve().parents[2]


def test_cmaes_warm_start_begins_at_x0() -> None:
    x0 = np.array([3.0, -2.0, 0.5, 7.0])
    first: list[torch.Tensor] = []

    def fitness(params: torch.Tensor, rollouts: int) -> torch.Tensor:
        if not first:
            first.append(params.clone())
        return -(params - torch.as_tensor(x0, dtype=torch.float32)).pow(2).sum(1)

    config = DreamConfig(generations=3, population=16, sigma0=1e-3, eval_every=1, eval_rollouts=1)
    best, _ = evolve(4, fitness, config, x0=x0)
    generation0 = first[0]
    assert generation0.shape == (16, 4)
    assert torch.allclose(generation0.mean(0), torch.as_tensor(x0, dtype=torch.float32), atol=0.01)
    assert np.allclose(best, x0, atol=0.01)
    cold, _ = evolve(4, lambda p, r: -p.pow(2).sum(1), config)  # default: from zeros
    assert np.allclose(cold, 0.0, atol=0.01)
    with pytest.raises(ValueError, match="x0 has 3 parameters"):
        evolve(4, fitness, config, x0=np.zeros(3))


def test_best_keeps_the_first_highest_real_return() -> None:
    best = it.Best()
    mdn = {"w": torch.zeros(2)}
    kept = []
    for iteration, mean in enumerate([5.0, 3.0, 7.0, 7.0, 6.0]):
        state = {"w": mdn["w"] + iteration}
        kept.append(best.update(iteration, mean, state, torch.full((3,), float(iteration))))
        state["w"].add_(100.0)  # the caller's tensors change later: Best holds copies
    assert kept == [True, False, True, False, False]
    assert best.iteration == 2 and best.real_mean == 7.0
    assert best.mdn["w"].tolist() == [2.0, 2.0] and best.params.tolist() == [2.0, 2.0, 2.0]


def test_iteration_adds_on_policy_episodes_to_m_data(tmp_path, one_thread) -> None:
    src = source_run(tmp_path)
    icfg = it.IterateConfig(
        iterations=1, iter_episodes=3, iter_mdn_epochs=1, iter_noise=0.2, iter_explore=0.2
    )
    summary = it.iterate_vmc(src, tmp_path / "it", icfg, ["dream.generations=2"], env=FakeEnv())
    zero, one = summary["iterations"]
    assert zero["iteration"] == 0 and zero["real_return"]["n"] == 2 and "frames_added" not in zero
    assert one["episodes_added"] == 3 and one["frames_added"] == 3 * 13
    assert one["m_data"] == {"episodes": 4 + 3, "transitions": (4 + 3) * 12}  # M saw old + new
    assert summary["data"]["frames"] == 4 * 13 + 3 * 13 == summary["data"]["source_frames"] + 39
    assert set(one["seconds"]) == {"1_collect", "2_train_M", "3_evolve_C", "4_eval", "total"}
    assert "mdn/nll" in one["mdn"] and len(one["cmaes"]["evaluated_means"]) == 2
    assert summary["config"]["dream"]["generations"] == 2
    new = load_rollouts(one["rollouts"], None, {"env": "fake", "policy": "controller", "iteration": 1})
    assert len(new) == 3 and all(len(ep["frames"]) == 13 for ep in new)
    assert summary["best"]["iteration"] in (0, 1) and (tmp_path / "it" / "summary.json").is_file()
    # The saved config lists the new rollouts, so a further run continues with all the data.
    last, meta = load_checkpoint(tmp_path / "it" / "last.safetensors")
    assert meta["config"]["extra_data"].split(",")[-1] == one["rollouts"] and meta["iteration"] == 1
    again = it.iterate_vmc(tmp_path / "it", tmp_path / "it2", it.IterateConfig(iterations=0), env=FakeEnv())
    assert again["data"]["episodes"] == 4 + 3


def test_vmc_safetensors_holds_the_best_iteration(tmp_path, monkeypatch, one_thread) -> None:
    src = source_run(tmp_path)
    means = iter([4.0, 9.0, 6.0])  # iteration 1 is the best
    monkeypatch.setattr(it, "evaluate_real", lambda *a, **k: [next(means)])
    icfg = it.IterateConfig(iterations=2, iter_episodes=1, iter_mdn_epochs=1)
    summary = it.iterate_vmc(src, tmp_path / "it", icfg, ["dream.sigma0=0.5"], env=FakeEnv(), command="c")
    assert [r["best_so_far"] for r in summary["iterations"]] == [True, True, False]
    assert summary["best"] == {"iteration": 1, "real_return": {"mean": 9.0, "std": 0.0, "n": 1}}
    assert json.loads((tmp_path / "it" / "summary.json").read_text())["command"] == "c"
    best, meta = load_checkpoint(tmp_path / "it" / "vmc.safetensors")
    last, _ = load_checkpoint(tmp_path / "it" / "last.safetensors")
    source, _ = load_checkpoint(src / "vmc.safetensors")
    assert meta["iteration"] == 1
    assert not torch.equal(best["controller"], last["controller"])
    assert not torch.equal(best["controller"], source["controller"])
    assert all(torch.equal(best["vae"][k], source["vae"][k]) for k in source["vae"])  # V stays fixed


def test_bad_source_gives_one_clear_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no V-M-C run at"):
        it.load_source(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "vmc.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        it.load_source(tmp_path / "bad")
    script = [sys.executable, str(ROOT / "scripts" / "vmc_iterate.py")]
    done = subprocess.run(
        [*script, "--from", str(tmp_path / "bad"), "--logdir", str(tmp_path / "o"), "iterations=1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and done.stderr.strip().startswith("vmc_iterate: checkpoint")
    assert "Traceback" not in done.stderr


def test_missing_source_rollouts_are_refused(tmp_path, one_thread) -> None:
    src = source_run(tmp_path)
    (tmp_path / "data.npz").unlink()
    with pytest.raises(CheckpointError, match="rollouts of .* missing: .*data.npz"):
        it.iterate_vmc(src, tmp_path / "it", it.IterateConfig(iterations=1, iter_episodes=1), env=FakeEnv())
    with pytest.raises(ValueError, match="iter_explore"):
        it.IterateConfig(iter_explore=2.0)
    assert it.split_overrides(["iterations=2", "dream.generations=3", "iter_noise=0"]) == (
        ["iterations=2", "iter_noise=0"],
        ["dream.generations=3"],
    )


def test_iteration_with_c_evolved_on_real_returns(tmp_path, one_thread) -> None:
    """``controller_env=real`` (the CarRacing recipe): step 3 scores C in the env, from the current C."""
    src = source_run(tmp_path)
    real = ["controller_env=real", "dream.rollouts=1", "dream.eval_rollouts=1", "dream.horizon=12"]
    icfg = it.IterateConfig(iterations=1, iter_episodes=2, iter_mdn_epochs=1)
    summary = it.iterate_vmc(src, tmp_path / "it", icfg, real, env=FakeEnv())
    assert summary["iterations"][1]["cmaes"]["scored_in"] == "real"
    assert summary["iterations"][1]["frames_added"] == 2 * 13
