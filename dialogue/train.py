"""Training of the DialogueWorldModel with Accelerate.

``arrcoc train --data FILE_OR_NAME --output DIR [--max-steps N] [key=value ...]`` runs
`train`. One process or many (``accelerate launch``/``torchrun``): Accelerate places the
model, wraps it for data parallelism and accumulates gradients. The frozen encoder's turn
embeddings are computed once and cached (``DIR/cache``); with
``model.encoder.trainable=true`` the encoder is fine-tuned (learning rate ``encoder_lr``)
and re-embeds each batch's turns. The data order is a seeded permutation per epoch, split
across ranks, so a run resumed from ``DIR/checkpoints/last.safetensors`` (model,
optimiser, position, RNG) continues exactly where it stopped. Metrics go to
``DIR/metrics.jsonl`` and TensorBoard; the dev split is evaluated after each epoch; the
final model is saved to ``DIR/model`` (`DialogueWorldModel.from_pretrained`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dialogue.batching import StepData, build_examples, make_batch
from dialogue.bpe import train_bpe
from dialogue.config import DialogueConfig
from dialogue.data import load_dialogues
from dialogue.encoder import TurnEncoder
from dialogue.evaluate import evaluate
from dialogue.model import DialogueWorldModel
from worldmodel.checkpoint import (
    atomic_write_json,
    check_config_compatible,
    load_checkpoint,
    save_checkpoint,
)
from worldmodel.config import config_to_dict, resolve_config
from worldmodel.run import RunDir, progress, rng_state, seed_everything, set_rng_state

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training run settings; ``model.*`` keys configure the `DialogueConfig`."""

    model: DialogueConfig = field(default_factory=DialogueConfig)
    data: str = "sharegpt"
    train_split: str = "train"
    dev_split: str = "dev"
    max_dialogues: int = 0  # 0: all dialogues of the split
    max_dev_dialogues: int = 400
    max_turns: int = 32  # turns kept per dialogue (counted warning beyond)
    bpe_vocab: int = 4096
    batch_size: int = 16  # windows per process per micro-batch
    grad_accum: int = 1
    lr: float = 1e-3
    encoder_lr: float = 2e-5  # fine-tuning rate of a trainable encoder (model.encoder.trainable)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    epochs: int = 1
    max_steps: int = 0  # optimiser steps; 0: run `epochs` epochs
    save_every: int = 200
    log_every: int = 10
    seed: int = 0
    threads: int = 0  # torch threads per process; 0: leave torch's default
    cache_dir: str = ""  # embedding cache; "": OUTPUT/cache
    eval_dev: bool = True
    # "no", "fp16" (GPU), "bf16" (GPU or CPU autocast); "": from `accelerate launch` / its config
    mixed_precision: str = ""


def _load_split(cfg: TrainConfig, split: str, limit: int) -> Any:
    dialogues, report = load_dialogues(cfg.data, split=split, limit=limit or None)
    log.info("%s split: %s", split, report.summary())
    if not len(dialogues):
        raise ValueError(f"no dialogues in split {split!r} of {cfg.data!r}")
    return dialogues


def _tokenizer(cfg: TrainConfig, out: Path, dialogues: Any, accelerator: Any) -> Any:
    from tokenizers import Tokenizer

    path = out / "tokenizer.json"
    with accelerator.main_process_first():
        if not path.is_file() and accelerator.is_main_process:
            bpe = train_bpe(
                (t["text"] for d in dialogues["turns"] for t in d), vocab_size=cfg.bpe_vocab
            )
            path.write_text(bpe.to_str(), encoding="utf-8")
    return Tokenizer.from_file(str(path))


def _batch_indices(
    cfg: TrainConfig, size: int, epoch: int, micro: int, rank: int, world: int
) -> list[int]:
    """Rows of micro-batch ``micro`` of ``epoch`` for ``rank`` (a seeded permutation per epoch)."""
    perm = torch.randperm(size, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
    start = (micro * world + rank) * cfg.batch_size
    return perm[start : start + cfg.batch_size].tolist()


def train(cfg: TrainConfig, output: str | Path) -> dict[str, float]:
    """Train (or resume) into ``output``. Returns the last dev metrics (empty when disabled)."""
    from accelerate import Accelerator

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision=cfg.mixed_precision or None,
        cpu=not torch.cuda.is_available(),
    )
    seed_everything(cfg.seed)
    train_dialogues = _load_split(cfg, cfg.train_split, cfg.max_dialogues)
    bpe = _tokenizer(cfg, out, train_dialogues, accelerator)
    cfg.model.decoder.vocab_size = bpe.get_vocab_size()
    m = cfg.model
    encoder = TurnEncoder(m.encoder.name, m.encoder.trainable, m.encoder.max_length)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else out / "cache"
    show = accelerator.is_main_process
    with accelerator.main_process_first():
        data = build_examples(train_dialogues, encoder, bpe, m, cache, cfg.max_turns, show)
        dev = None
        if cfg.eval_dev:
            dev_dialogues = _load_split(cfg, cfg.dev_split, cfg.max_dev_dialogues)
            dev = build_examples(dev_dialogues, encoder, bpe, m, cache, cfg.max_turns, show)
    seed_everything(cfg.seed)
    model = DialogueWorldModel(m, tokenizer=bpe, encoder=encoder)
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.startswith("encoder.")]},
        {"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": cfg.encoder_lr},
    ]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    return _loop(cfg, out, accelerator, model, optimizer, data, dev)


def _state(
    cfg: TrainConfig, accelerator: Any, model: Any, optimizer: Any, pos: dict[str, int]
) -> dict:
    keep_encoder = cfg.model.encoder.trainable
    weights = {
        k: v
        for k, v in accelerator.unwrap_model(model).state_dict().items()
        if keep_encoder or not k.startswith("encoder.")
    }
    return {"model": weights, "optim": optimizer.state_dict(), "pos": dict(pos), "rng": rng_state()}


def _resume(
    path: Path, cfg: TrainConfig, accelerator: Any, model: Any, optimizer: Any
) -> dict[str, int]:
    state, meta = load_checkpoint(path)
    check_config_compatible(
        meta["config"],
        json.loads(json.dumps(config_to_dict(cfg))),  # tuples -> lists, as saved
        ignore=("max_steps", "epochs", "save_every", "log_every", "threads", "mixed_precision"),
    )
    accelerator.unwrap_model(model).load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optim"])
    set_rng_state(state["rng"])
    return {k: int(v) for k, v in state["pos"].items()}


def _loop(
    cfg: TrainConfig,
    out: Path,
    accelerator: Any,
    model: Any,
    optimizer: Any,
    data: StepData,
    dev: StepData | None,
) -> dict[str, float]:
    world, rank = accelerator.num_processes, accelerator.process_index
    encoder = accelerator.unwrap_model(model).encoder
    per_epoch = len(data) // (cfg.batch_size * world)
    if per_epoch < cfg.grad_accum:
        raise ValueError(
            f"{len(data)} training windows are too few for batch_size={cfg.batch_size} x {world} processes"
            f" x grad_accum={cfg.grad_accum}"
        )
    steps_per_epoch = per_epoch // cfg.grad_accum
    total = cfg.max_steps or steps_per_epoch * cfg.epochs
    last = out / "checkpoints" / "last.safetensors"
    pos = {"step": 0, "epoch": 0, "micro": 0}
    if last.is_file():
        pos = _resume(last, cfg, accelerator, model, optimizer)
        log.info("resumed from %s at step %d", last, pos["step"])
    run = RunDir(out, config_to_dict(cfg)) if accelerator.is_main_process else None
    bar = progress(total=total, desc="training", initial=pos["step"]) if run else None
    dev_metrics: dict[str, float] = {}
    seen, started = 0, time.perf_counter()
    model.train()
    while pos["step"] < total:
        rows = _batch_indices(cfg, len(data), pos["epoch"], pos["micro"], rank, world)
        examples = [data.examples[i] for i in rows]
        batch = {k: v.to(accelerator.device) for k, v in make_batch(examples, data, encoder).items()}
        with accelerator.accumulate(model):
            result = model(batch)
            accelerator.backward(result.loss)
            if accelerator.sync_gradients and cfg.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad()
        seen += len(rows) * world
        pos["micro"] += 1
        if pos["micro"] >= per_epoch - per_epoch % cfg.grad_accum:
            pos["epoch"], pos["micro"] = pos["epoch"] + 1, 0
        if not accelerator.sync_gradients:
            continue
        pos["step"] += 1
        if bar is not None:
            bar.update(1)
        if run is not None and (pos["step"] % cfg.log_every == 0 or pos["step"] == total):
            rate = seen / (time.perf_counter() - started)
            run.log(
                pos["step"], {"loss": result.loss.detach(), **result.metrics, "windows_per_s": rate}
            )
        epoch_done = pos["micro"] == 0
        if pos["step"] % cfg.save_every == 0 or pos["step"] == total or epoch_done:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(
                    last,
                    _state(cfg, accelerator, model, optimizer, pos),
                    {"config": config_to_dict(cfg)},
                )
        if dev is not None and run is not None and (epoch_done or pos["step"] == total):
            dev_metrics = evaluate(accelerator.unwrap_model(model), dev, seed=cfg.seed)
            run.log(pos["step"], dev_metrics)
            model.train()
    accelerator.wait_for_everyone()
    if run is not None:
        bar.close()
        if dev is not None and not dev_metrics:  # e.g. resumed at the final step
            dev_metrics = evaluate(accelerator.unwrap_model(model), dev, seed=cfg.seed)
            run.log(pos["step"], dev_metrics)
        accelerator.unwrap_model(model).save_pretrained(out / "model")
        atomic_write_json(out / "final_metrics.json", {"step": pos["step"], **dev_metrics})
        run.close()
    return dev_metrics


def train_from_cli(
    data: str, output: str, max_steps: int | None, overrides: list[str]
) -> dict[str, float]:
    """`arrcoc train`: build the `TrainConfig` from options and ``key=value`` overrides, then train."""
    preset: dict[str, Any] = {"data": data}
    if max_steps is not None:
        preset["max_steps"] = max_steps
    cfg = resolve_config(TrainConfig, overrides, preset=preset)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    metrics = train(cfg, output)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics
