"""``python -m benches.relevance.dev_tuning``: choose the ``hybrid`` method's fast-coupling weight on the
dev split, never on test.

Grid w in {0, 0.25, 0.5, 0.75, 1} (0 = ``reuse``, 1 = the reuse head unused). For each w, on dev
conversations (ShareGPT, primary track, the test recipe: one seeded cut each) the J1b R@1/10 at
budget 0.25 against BM25 candidate sets drawn from dev itself, and on J4 dialogues built from the
*train* templates with another seed the recall@0.25 of the needed values. The rule, fixed before
any test number: the w with the best dev J1b among those whose J4-dev recall is >= 0.95 (ties:
the smaller w). Caveat: the reuse head was trained on the J4 train pool, whose templates these
J4-dev dialogues share, so J4-dev recall is optimistic for w < 1 (test templates are disjoint). Writes
``benches/results/relevance_dev_hybrid.json``. Uses the benchmark's cache (scorer LM, reuse head).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi

from arrcoc.balancing import Balancer
from arrcoc.compress import realize
from arrcoc.knowing import WordScores, hybrid_coupling
from arrcoc.words import validate_messages
from benches.relevance.budget import budget_for, compress, select_top
from benches.relevance.data import Instance, load_sharegpt, make_instances, render_turns, split_conversations
from benches.relevance.judges import j4_metrics
from benches.relevance.retrieval import _rank_metrics, bm25_tokens, build_candidate_sets
from benches.relevance.runner import Benchmark, BenchSettings
from benches.relevance.synthetic import task_dialogues
from benches.relevance.wm_methods import world_model_scorers
from worldmodel.checkpoint import atomic_write_json
from worldmodel.run import package_version

ROOT = Path(__file__).resolve().parents[2]
GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_J4 = 0.95
J4_DEV_SEED = 7  # the J4 train pool uses the benchmark seed (0); these dialogues are new ones


def choose(j1b: dict[float, float], j4: dict[float, float], min_j4: float = MIN_J4) -> float:
    """The rule: best dev J1b among the weights whose J4-dev recall is >= ``min_j4`` (ties: smaller w)."""
    ok = [w for w in sorted(j1b) if j4[w] >= min_j4]
    if not ok:
        raise ValueError(f"no weight keeps J4-dev recall >= {min_j4}: {j4}")
    return max(ok, key=lambda w: (j1b[w], -w))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-dev", type=int, default=120, help="dev conversations (primary track)")
    p.add_argument("--n-j4", type=int, default=60, help="J4-dev dialogues (train templates)")
    p.add_argument("--world-model", default=str(ROOT / "dialogue" / "default"))
    p.add_argument("--cache-dir", default=str(ROOT / "benches" / ".cache" / "relevance"))
    p.add_argument("--out", default=str(ROOT / "benches" / "results" / "relevance_dev_hybrid.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    s = BenchSettings(lm_seeds=1)  # tuning reads only seed 0's scorer LM (a cache key field is unchanged)
    method = world_model_scorers(args.world_model, ("hybrid",))[0]
    bench = Benchmark(s, Path(args.cache_dir), (method,))
    bench.prepare()  # loads (or trains) the cached scorer LM and reuse head
    convs = split_conversations(load_sharegpt(s.max_records))["dev"]
    dev = [i for i in make_instances(convs, s.seed, bench.encoder.count_pieces) if i.track == "primary"]
    dev = dev[: args.n_dev]
    sets = build_candidate_sets(dev, s.seed)
    bm25 = BM25Okapi([bm25_tokens(t) or ["<empty>"] for t in sets.texts])
    j4_dev = task_dialogues(args.n_j4, "train", J4_DEV_SEED, s.j4_ask_names_kinds)
    scorer = method.relevance

    def balanced_by_weight(inst: Instance) -> dict[float, np.ndarray]:
        """Balanced scores [N] of ``hybrid`` for every grid weight (reuse and fast coupling run once)."""
        messages = validate_messages([{"role": t.role, "content": t.text} for t in inst.context])
        reuse, fast = scorer.score(messages, "reuse"), scorer.score(messages, "fast").scores["coupling"]
        out = {}
        for w in GRID:
            scores = {**reuse.scores, "coupling": hybrid_coupling(reuse.scores["coupling"], fast, w)}
            out[w] = np.asarray(realize(messages, WordScores(scores), Balancer(), None).balanced)
        return out

    hits: dict[float, list[float]] = {w: [] for w in GRID}
    recall: dict[float, list[float]] = {w: [] for w in GRID}
    for i, inst in enumerate(dev):
        cands = [sets.positive[i], *sets.negatives[i]]
        for w, balanced in balanced_by_weight(inst).items():
            tokens = bm25_tokens(
                render_turns(compress(inst, select_top(balanced, budget_for("0.25", inst.n_words))))
            )
            scores = np.asarray(bm25.get_batch_scores(tokens, cands)) if tokens else np.zeros(len(cands))
            hits[w].append(_rank_metrics(scores, 9)[0])
    for inst in j4_dev:
        for w, balanced in balanced_by_weight(inst).items():
            recall[w].append(j4_metrics(inst, balanced, budget_for("0.25", inst.n_words))["j4_recall"])
    j1b = {w: float(np.mean(v)) for w, v in hits.items()}
    j4 = {w: float(np.mean(v)) for w, v in recall.items()}
    for w in GRID:
        logging.info("w=%.2f: dev J1b R@1/10 %.3f, J4-dev recall %.3f", w, j1b[w], j4[w])
    out = {
        "command": " ".join(
            ["python -m benches.relevance.dev_tuning", *(sys.argv[1:] if argv is None else argv)]
        ),
        "version": package_version(),
        "settings": dataclasses.asdict(s),
        "n_dev": len(dev),
        "n_j4_dev": len(j4_dev),
        "rule": f"best dev J1b R@1/10 at 0.25 among weights with J4-dev recall@0.25 >= {MIN_J4}",
        "j1b_r1_10": {str(w): v for w, v in j1b.items()},
        "j4_recall": {str(w): v for w, v in j4.items()},
        "chosen": choose(j1b, j4),
    }
    atomic_write_json(Path(args.out), out)
    print(out)
    return out


if __name__ == "__main__":
    main()
