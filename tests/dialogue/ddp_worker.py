"""Run by test_train.py under `accelerate launch` / torchrun: one training step on 2 ranks.

Each rank writes a checksum of its weights (after the step) to OUTPUT/rank<r>.json.
Usage: ddp_worker.py DATA.jsonl ENCODER_DIR OUTPUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import dialogue.train as train_module

torch.set_num_threads(1)
data, encoder_dir, output = sys.argv[1:4]
original_loop = train_module._loop


def loop_and_report(cfg, out, accelerator, model, optimizer, steps, dev):
    metrics = original_loop(cfg, out, accelerator, model, optimizer, steps, dev)
    weights = accelerator.unwrap_model(model).state_dict()
    summary = {
        k: float(v.double().sum()) for k, v in weights.items() if not k.startswith("encoder.")
    }
    rank = accelerator.process_index
    (Path(out) / f"rank{rank}.json").write_text(
        json.dumps({"world": accelerator.num_processes, "sums": summary})
    )
    return metrics


train_module._loop = loop_and_report
overrides = [
    f"model.encoder.name={encoder_dir}",
    "model.encoder.max_length=32",
    "model.deter=32",
    "model.hidden=32",
    "model.stoch=4",
    "model.classes=4",
    "model.embed_dim=32",
    "model.action_dim=16",
    "model.decoder.dim=32",
    "model.decoder.layers=1",
    "model.decoder.heads=2",
    "model.decoder.max_tokens=16",
    "model.max_steps=4",
    "bpe_vocab=400",
    "batch_size=4",
    "train_split=all",
    "eval_dev=false",
]
cfg = train_module.resolve_config(
    train_module.TrainConfig, overrides, preset={"data": data, "max_steps": 1}
)
train_module.train(cfg, output)
