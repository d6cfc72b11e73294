"""The dialogue world model: training throughput and dev metrics against trivial baselines.

1. Dev metrics of a model directory (default: the shipped `dialogue/default`) on the dev
   split of ShareGPT (hashed root ids, bucket 8): next-user-turn retrieval R@1 and MRR of
   10 (true turn + 9 negatives from other dialogues, fixed seed) for the model's prior
   prediction and for two trivial predictions: the last turn before it (the assistant
   response) and the previous user turn; decoder perplexity of user turns and responses.
2. Training throughput, dialogues (windows) per second of forward+backward+step, with
   cached turn embeddings and, as the peer in the same run, with the frozen encoder
   embedding the turns of every batch (what the embedding cache saves).

    python benches/bench_dialogue.py [--model DIR] [--dev-dialogues 400] [--cache-dir DIR]
        [--steps 5] [--threads 1]

Prints JSON and writes benches/results/dialogue.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dialogue.batching import build_examples, collate
from dialogue.data import load_dialogues
from dialogue.evaluate import evaluate
from dialogue.model import DialogueWorldModel
from worldmodel.checkpoint import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "dialogue.json"
CACHE = Path(__file__).resolve().parent / ".cache" / "dialogue"


def throughput(model: DialogueWorldModel, data, steps: int, batch_size: int, encode: bool) -> float:
    """Windows per second of training steps (``encode``: re-embed each batch's turns with the encoder)."""
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    start, seen = time.perf_counter(), 0
    for i in range(steps):
        chunk = data.examples[i * batch_size : (i + 1) * batch_size]
        batch = collate(chunk, data.embeddings)
        if encode:
            users = [data.texts[r] for e in chunk for r in e.user_rows]
            replies = [data.texts[r] for e in chunk for r in e.assistant_rows if r >= 0]
            model.embed_texts(users + replies)
        loss = model(batch).loss
        optim.zero_grad()
        loss.backward()
        optim.step()
        seen += len(chunk)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="model directory (default: the shipped model)"
    )
    parser.add_argument("--dev-dialogues", type=int, default=400)
    parser.add_argument("--cache-dir", default=str(CACHE), help="turn-embedding cache directory")
    parser.add_argument(
        "--steps", type=int, default=5, help="training steps per throughput measurement"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = DialogueWorldModel.from_pretrained(args.model)
    dialogues, report = load_dialogues("sharegpt", split="dev", limit=args.dev_dialogues)
    data = build_examples(
        dialogues, model.encoder, model.tokenizer, model.config, args.cache_dir, max_turns=16
    )
    metrics = evaluate(model, data)
    cached = throughput(model, data, args.steps, args.batch_size, encode=False)
    uncached = throughput(model, data, args.steps, args.batch_size, encode=True)
    result = {
        "model": args.model or "dialogue/default",
        "dev_dialogues": len(dialogues),
        "dev_windows": len(data),
        "skipped_records": dict(report.skipped),
        **{k.removeprefix("dev/"): round(v, 4) for k, v in metrics.items()},
        "train_windows_per_s_cached": round(cached, 2),
        "train_windows_per_s_encoding": round(uncached, 2),
        "cache_speedup": round(cached / uncached, 2),
        "threads": args.threads,
    }
    atomic_write_json(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
