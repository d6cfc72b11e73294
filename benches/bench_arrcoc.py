"""Speed of arrcoc's word scoring, against one MiniLM forward pass over the same text.

Measured in one run on this CPU:

* ``fast_vs_minilm``: fast-form future coupling of a 512-word context (one chunked
  encoder pass + the world model's Jacobian) / one MiniLM forward pass over the same
  messages (target <= 3x); ``score_vs_minilm`` the same for the full `score` call
  (coupling + decoder surprisal + salience).
* words/s of the fast and exact (batched occlusion) forms at 512 words, and the fast
  form at 512 .. 8192 words (``scaling_fast``), each size paired with a MiniLM pass over
  the same messages: a flat ``fast_vs_minilm`` across sizes means the fast form scales
  like the encoder itself, i.e. linearly in the number of (short) turns.

Every timing is paired with its peer back to back and ratios are medians of per-pair
ratios, because the CPU is shared with other jobs and absolute times drift.
* ``spearman_fast_exact``: rank agreement of the two forms on the 512-word context.

The model is ``--model DIR``, else the shipped default, else (stated in the output) a
randomly initialised DialogueWorldModel of the default size on the real MiniLM encoder:
speed does not depend on training, rank agreement does.

    python benches/bench_arrcoc.py [--model DIR] [--repeats 3] [--threads 2] [--max-words 8192]

Prints JSON and writes benches/results/arrcoc.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from arrcoc.demo import sample_dialogue
from arrcoc.future_coupling import coupling_exact, coupling_fast
from arrcoc.knowing import WorldModelScorer
from worldmodel.checkpoint import CheckpointError, atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "arrcoc.json"


def load_model(path: str | None) -> tuple[WorldModelScorer, str]:
    """The scorer and a description of the model it wraps."""
    from dialogue.model import DialogueWorldModel

    try:
        return WorldModelScorer(DialogueWorldModel.from_pretrained(path)), path or "shipped default"
    except CheckpointError:
        if path is not None:
            raise
    from dialogue.bpe import train_bpe
    from dialogue.config import DialogueConfig

    torch.manual_seed(0)
    texts = [m["content"] for m in sample_dialogue()["messages"]] * 50
    bpe = train_bpe(texts, vocab_size=512, min_frequency=1)
    config = DialogueConfig()
    config.decoder.vocab_size = bpe.get_vocab_size()
    return WorldModelScorer(
        DialogueWorldModel(config, tokenizer=bpe)
    ), "random init, default size (no shipped model)"


def context(num_words: int) -> list[dict[str, str]]:
    """The sample dialogue's user/assistant messages repeated and cut to exactly ``num_words`` words."""
    turns = [m for m in sample_dialogue()["messages"] if m["role"] != "system"]
    out, total, i = [], 0, 0
    while total < num_words:
        words = turns[i % len(turns)]["content"].split()[: num_words - total]
        out.append({"role": turns[i % len(turns)]["role"], "content": " ".join(words)})
        total += len(words)
        i += 1
    return out


def paired(fn, peer, repeats: int) -> tuple[float, float, float]:
    """Alternate ``fn`` and ``peer`` ``repeats`` times after a warm-up of each.

    Returns median seconds of each and the median of the per-pair ratios fn / peer (pairs
    run back to back, so a load change on the shared CPU affects both sides alike).
    """
    fn(), peer()
    a, b = [], []
    for _ in range(repeats):
        for fun, out in ((fn, a), (peer, b)):
            start = time.perf_counter()
            fun()
            out.append(time.perf_counter() - start)
    return (
        statistics.median(a),
        statistics.median(b),
        statistics.median(x / y for x, y in zip(a, b, strict=True)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-words", type=int, default=8192)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scorer, model_name = load_model(args.model)
    enc = scorer.model.encoder
    messages = context(512)

    def minilm(msgs=messages) -> torch.Tensor:
        batch = enc.tokenize([m["content"] for m in msgs], max_length=512)
        with torch.no_grad():
            return enc.encode_tokens(batch["input_ids"], batch["attention_mask"])[0]

    def fast(msgs=messages) -> torch.Tensor:
        return coupling_fast(scorer.pool(msgs)[0], scorer._imagine, scorer.proj)

    def exact() -> torch.Tensor:
        return coupling_exact(scorer.pool(messages)[0], scorer._imagine, scorer.proj, scorer.batch_size)

    t_fast, t_minilm, r_fast = paired(fast, minilm, args.repeats)
    t_score, _, r_score = paired(lambda: scorer.score(messages, "fast"), minilm, args.repeats)
    t_exact, _, r_exact = paired(exact, minilm, 1)
    rho = spearmanr(fast().numpy(), exact().numpy()).statistic
    scaling = {}
    n = 512
    while n <= args.max_words:
        msgs = context(n)
        seconds, peer_s, ratio = paired(lambda msgs=msgs: fast(msgs), lambda msgs=msgs: minilm(msgs), 1)
        scaling[str(n)] = {
            "fast_s": round(seconds, 4),
            "minilm_s": round(peer_s, 4),
            "fast_vs_minilm": round(ratio, 3),
            "words_per_s": round(n / seconds, 1),
        }
        n *= 2
    result = {
        "model": model_name,
        "threads": args.threads,
        "context_words": 512,
        "minilm_forward_s": round(t_minilm, 4),
        "fast_coupling_s": round(t_fast, 4),
        "fast_vs_minilm": round(r_fast, 3),
        "score_fast_s": round(t_score, 4),
        "score_vs_minilm": round(r_score, 3),
        "exact_coupling_s": round(t_exact, 4),
        "exact_vs_minilm": round(r_exact, 3),
        "words_per_s": {"fast": round(512 / t_fast, 1), "exact": round(512 / t_exact, 1)},
        "spearman_fast_exact": round(float(rho), 4),
        "scaling_fast": scaling,
    }
    print(json.dumps(result, indent=2))
    atomic_write_json(RESULTS, result)


if __name__ == "__main__":
    main()
