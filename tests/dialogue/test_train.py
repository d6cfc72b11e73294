"""Training: exact resume, the CLI, and two data-parallel processes agreeing on the weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from dialogue.train import TrainConfig, train
from worldmodel.config import resolve_config

HERE = Path(__file__).resolve().parent


def _tiny_overrides(encoder_path: str) -> list[str]:
    sizes = "deter=32 hidden=32 stoch=4 classes=4 embed_dim=32 action_dim=16 max_steps=4".split()
    dec = "dim=32 layers=1 heads=2 max_tokens=16".split()
    return (
        [f"model.encoder.name={encoder_path}", "model.encoder.max_length=32"]
        + [f"model.{kv}" for kv in sizes]
        + [f"model.decoder.{kv}" for kv in dec]
        + ["bpe_vocab=400", "batch_size=4", "train_split=all", "log_every=1", "save_every=1"]
    )


def _cfg(data: str, encoder_path: str, max_steps: int, **extra) -> TrainConfig:
    preset = {"data": data, "max_steps": max_steps, "eval_dev": False, **extra}
    return resolve_config(TrainConfig, _tiny_overrides(encoder_path), preset=preset)


@pytest.mark.parametrize("trainable", [False, True], ids=["frozen_encoder", "fine_tuned_encoder"])
def test_resume_continues_exactly(tiny_jsonl, tiny_encoder_path, tmp_path, trainable):
    extra = {"model": {"encoder": {"trainable": trainable}}}
    train(_cfg(tiny_jsonl, tiny_encoder_path, 4, **extra), tmp_path / "straight")
    train(_cfg(tiny_jsonl, tiny_encoder_path, 2, **extra), tmp_path / "resumed")
    train(_cfg(tiny_jsonl, tiny_encoder_path, 4, **extra), tmp_path / "resumed")
    a = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [
        json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all("loss" in r for r in rows)
    with pytest.raises(ValueError, match="different config"):
        train(_cfg(tiny_jsonl, tiny_encoder_path, 6, lr=0.5), tmp_path / "resumed")


def test_dev_evaluation_and_cli(tiny_jsonl, tiny_encoder_path, tmp_path):
    from arrcoc.cli import app

    args = ["train", "--data", tiny_jsonl, "--output", str(tmp_path / "run"), "--max-steps", "2"]
    result = CliRunner().invoke(app, args + _tiny_overrides(tiny_encoder_path) + ["dev_split=all"])
    assert result.exit_code == 0, result.output
    final = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
    assert final["step"] == 2 and 0 <= final["dev/model_r_at_1"] <= 1 and final["dev/user_ppl"] > 1
    assert final["dev/baseline_last_turn_r_at_1"] >= 0
    bad = CliRunner().invoke(app, args + ["model.detr=3"])
    assert bad.exit_code == 2 and "unknown config key 'model.detr'" in bad.output


@pytest.mark.slow
def test_two_processes_agree_on_weights_after_a_step(tiny_jsonl, tiny_encoder_path, tmp_path):
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    cmd = launcher + [str(HERE / "ddp_worker.py"), tiny_jsonl, tiny_encoder_path, str(tmp_path)]
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=600, cwd=HERE.parent.parent
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert ranks[0]["sums"] == ranks[1]["sums"]
    initial_rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert initial_rows[-1]["step"] == 1


def test_fine_tuning_the_encoder_trains_saves_and_reloads_it(tiny_jsonl, tiny_encoder_path, tmp_path):
    from dialogue.encoder import TurnEncoder
    from dialogue.model import DialogueWorldModel

    cfg = _cfg(tiny_jsonl, tiny_encoder_path, 3, model={"encoder": {"trainable": True}}, eval_dev=True)
    cfg.dev_split = "all"
    metrics = train(cfg, tmp_path / "run")
    assert 0 <= metrics["dev/model_r_at_1"] <= 1
    saved = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    base = TurnEncoder(tiny_encoder_path).model.state_dict()
    tuned = {k.removeprefix("encoder.model."): v for k, v in saved.items() if k.startswith("encoder.model.")}
    table = "embeddings.word_embeddings.weight"
    assert tuned.keys() == base.keys() and not torch.equal(tuned[table], base[table])
    # the encoder learns with its own small learning rate (Adam: at most ~3 lr per step here)
    assert 0 < (tuned[table] - base[table]).abs().max() <= 3 * 3 * cfg.encoder_lr
    model = DialogueWorldModel.from_pretrained(tmp_path / "run" / "model")
    assert torch.equal(model.encoder.model.embeddings.word_embeddings.weight, tuned[table])


def test_bf16_mixed_precision_runs_under_autocast_on_cpu(tiny_jsonl, tiny_encoder_path, tmp_path):
    # Accelerate's state is per process: the bf16 run goes through the CLI in a fresh process.
    train(_cfg(tiny_jsonl, tiny_encoder_path, 2, mixed_precision="no"), tmp_path / "no")
    args = ["train", "--data", tiny_jsonl, "--output", str(tmp_path / "bf16"), "--max-steps", "2"]
    args += _tiny_overrides(tiny_encoder_path) + ["eval_dev=false", "mixed_precision=bf16"]
    code = "import sys; from arrcoc.cli import app; app(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    losses = {}
    for precision in ("no", "bf16"):
        rows = [json.loads(x) for x in (tmp_path / precision / "metrics.jsonl").read_text().splitlines()]
        losses[precision] = rows[0]["loss"]
    # Same data and initial weights: bf16 autocast changes the loss a little, not a lot.
    assert losses["bf16"] != losses["no"]
    assert abs(losses["bf16"] - losses["no"]) < 0.05 * abs(losses["no"])


def test_gradient_accumulation_steps_once_per_micro_batches_and_logs_tensorboard(
    tiny_jsonl, tiny_encoder_path, tmp_path
):
    from worldmodel.checkpoint import load_checkpoint

    train(_cfg(tiny_jsonl, tiny_encoder_path, 2, grad_accum=2, batch_size=2), tmp_path / "accum")
    state, _ = load_checkpoint(tmp_path / "accum" / "checkpoints" / "last.safetensors")
    assert {k: int(v) for k, v in state["pos"].items()} == {"step": 2, "epoch": 0, "micro": 4}
    adam = state["optim"]["state"]
    assert all(int(s["step"]) == 2 for s in adam.values())  # two optimiser steps for four micro-batches
    assert list((tmp_path / "accum").glob("events.out.tfevents.*"))
