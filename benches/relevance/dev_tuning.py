"""``python -m benches.relevance.dev_tuning``: choose the ``hybrid`` method's fast-coupling weight and
then its balancer tensions on the dev split, never on test.

Grid w in {0, 0.25, 0.5, 0.75, 1} (0 = ``reuse``, 1 = the reuse head unused). For each w, on dev
conversations (ShareGPT, primary track, the test recipe: one seeded cut each) the J1b R@1/10 at
budget 0.25 against BM25 candidate sets drawn from dev itself, and on J4 dialogues built from the
*train* templates with another seed the recall@0.25 of the needed values. The rule, fixed before
any test number: the w with the best dev J1b among those whose J4-dev recall is >= 0.95 (ties:
the smaller w). Caveat: the reuse head was trained on the J4 train pool, whose templates these
J4-dev dialogues share, so J4-dev recall is optimistic for w < 1 (test templates are disjoint).

Stage 2, at the chosen w: the tensions ``compress_particularize`` x ``focus_diversify`` on a grid (the
`Tensions` defaults 0.7 / 0.2 are stage 1's), scored also by J2c retention at 0.25 (the benchmark's
cache judge, weight fitted on half B). The rule, fixed before any test number of the setting: the best
dev J2c among settings with J4-dev recall >= 0.95 and dev J1b no more than 0.02 below stage 1's (ties:
the one nearest the defaults). Writes ``benches/results/relevance_dev_hybrid.json``. Uses the
benchmark's cache (scorer LM, judge, reuse head).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import os
import sys
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi

from arrcoc.balancing import Balancer, Tensions
from arrcoc.compress import realize, tensions_for
from arrcoc.knowing import HYBRID_FAST_WEIGHT, WordScores, hybrid_coupling
from arrcoc.words import validate_messages
from benches.relevance.budget import budget_for, compress, select_top
from benches.relevance.data import (
    TARGET_SPAN,
    Instance,
    load_sharegpt,
    make_instances,
    render_turns,
    split_conversations,
)
from benches.relevance.judges import j4_metrics, retention
from benches.relevance.retrieval import _rank_metrics, bm25_tokens, build_candidate_sets
from benches.relevance.runner import Benchmark, BenchSettings
from benches.relevance.synthetic import task_dialogues
from benches.relevance.wm_methods import world_model_scorers
from worldmodel.checkpoint import atomic_write_json
from worldmodel.run import package_version

ROOT = Path(__file__).resolve().parents[2]
GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
TENSION_GRID = tuple(itertools.product((0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9), (0.0, 0.1, 0.2, 0.5)))
MIN_J4 = 0.95
MAX_J1B_DROP = 0.02
J4_DEV_SEED = 7  # the J4 train pool uses the benchmark seed (0); these dialogues are new ones


def choose(j1b: dict[float, float], j4: dict[float, float], min_j4: float = MIN_J4) -> float:
    """The rule: best dev J1b among the weights whose J4-dev recall is >= ``min_j4`` (ties: smaller w)."""
    ok = [w for w in sorted(j1b) if j4[w] >= min_j4]
    if not ok:
        raise ValueError(f"no weight keeps J4-dev recall >= {min_j4}: {j4}")
    return max(ok, key=lambda w: (j1b[w], -w))


def choose_tensions(
    j2c: dict, j1b: dict, j4: dict, j1b_floor: float, default: tuple[float, float] = (0.7, 0.2)
) -> tuple[float, float]:
    """Stage 2's rule: best dev J2c among (compress_particularize, focus_diversify) settings with J4-dev
    recall >= ``MIN_J4`` and dev J1b >= ``j1b_floor`` (ties: nearest ``default``)."""
    ok = [g for g in j2c if j4[g] >= MIN_J4 and j1b[g] >= j1b_floor]
    if not ok:
        raise ValueError(f"no tension setting keeps J4-dev >= {MIN_J4} and J1b >= {j1b_floor:.3f}")
    return max(ok, key=lambda g: (j2c[g], -abs(g[0] - default[0]) - abs(g[1] - default[1])))


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
    # Tuning reads only seed 0's scorer LM (lm_seeds is not part of the cache key).
    s = BenchSettings(lm_seeds=1)
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

    def balanced_by_setting(inst: Instance) -> dict:
        """Balanced scores [N] of ``hybrid`` for every stage-1 weight ``w`` (default tensions) and every
        stage-2 tension setting ``(cp, fd)`` at ``HYBRID_FAST_WEIGHT`` (each coupling runs once)."""
        messages = validate_messages([{"role": t.role, "content": t.text} for t in inst.context])
        reuse, fast = scorer.score(messages, "reuse"), scorer.score(messages, "fast").scores["coupling"]
        settings = [(w, Tensions()) for w in GRID]
        settings += [(HYBRID_FAST_WEIGHT, Tensions(cp, 0.5, fd)) for cp, fd in TENSION_GRID]
        out = {}
        for (w, t), key in zip(settings, [*GRID, *TENSION_GRID], strict=True):
            scores = {**reuse.scores, "coupling": hybrid_coupling(reuse.scores["coupling"], fast, w)}
            out[key] = np.asarray(realize(messages, WordScores(scores), Balancer(t), None).balanced)
        return out

    keys = [*GRID, *TENSION_GRID]
    hits: dict = {k: [] for k in keys}
    recall: dict = {k: [] for k in keys}
    nll: dict = {k: [] for k in ["empty", "full", *TENSION_GRID]}
    cache_weight = bench.cache_fit["weight"]
    for i, inst in enumerate(dev):
        cands = [sets.positive[i], *sets.negatives[i]]
        contexts = {"empty": (), "full": inst.context}
        for key, balanced in balanced_by_setting(inst).items():
            turns = compress(inst, select_top(balanced, budget_for("0.25", inst.n_words)))
            tokens = bm25_tokens(render_turns(turns))
            scores = np.asarray(bm25.get_batch_scores(tokens, cands)) if tokens else np.zeros(len(cands))
            hits[key].append(_rank_metrics(scores, 9)[0])
            if key in TENSION_GRID:
                contexts[key] = turns
        span = bench.judge.target_nll(
            list(contexts.values()), inst.targets[:TARGET_SPAN], cache_weights=(cache_weight,)
        )[:, 0, 1]
        for key, value in zip(contexts, span, strict=True):
            nll[key].append(value)
    for inst in j4_dev:
        for key, balanced in balanced_by_setting(inst).items():
            recall[key].append(j4_metrics(inst, balanced, budget_for("0.25", inst.n_words))["j4_recall"])
    j1b = {k: float(np.mean(v)) for k, v in hits.items()}
    j4 = {k: float(np.mean(v)) for k, v in recall.items()}
    j2c = {
        g: retention(np.asarray(nll[g]), np.asarray(nll["empty"]), np.asarray(nll["full"]))
        for g in TENSION_GRID
    }
    for w in GRID:
        logging.info("w=%.2f: dev J1b R@1/10 %.3f, J4-dev recall %.3f", w, j1b[w], j4[w])
    chosen = choose({w: j1b[w] for w in GRID}, {w: j4[w] for w in GRID})
    if chosen != HYBRID_FAST_WEIGHT:
        raise SystemExit(
            f"stage 1 chose w={chosen}, but the shipped HYBRID_FAST_WEIGHT is {HYBRID_FAST_WEIGHT}"
        )
    floor = j1b[chosen] - MAX_J1B_DROP
    for g in TENSION_GRID:
        logging.info("tensions %s: dev J2c %.3f, J1b %.3f, J4-dev %.3f", g, j2c[g], j1b[g], j4[g])
    chosen_tensions = choose_tensions(j2c, j1b, j4, floor)
    shipped = tensions_for("hybrid")
    if chosen_tensions != (shipped.compress_particularize, shipped.focus_diversify):
        logging.warning("stage 2 chose %s, but arrcoc ships %s for hybrid", chosen_tensions, shipped)
    out = {
        "command": " ".join(
            ["python -m benches.relevance.dev_tuning", *(sys.argv[1:] if argv is None else argv)]
        ),
        "version": package_version(),
        "settings": dataclasses.asdict(s),
        "n_dev": len(dev),
        "n_j4_dev": len(j4_dev),
        "rule": f"best dev J1b R@1/10 at 0.25 among weights with J4-dev recall@0.25 >= {MIN_J4}",
        "j1b_r1_10": {str(w): j1b[w] for w in GRID},
        "j4_recall": {str(w): j4[w] for w in GRID},
        "chosen": chosen,
        "tensions": {
            "rule": f"best dev J2c retention at 0.25 among (compress_particularize, focus_diversify) with "
            f"J4-dev recall >= {MIN_J4} and dev J1b >= stage 1's - {MAX_J1B_DROP}",
            "judge_cache_weight": cache_weight,
            "grid": [
                {"compress_particularize": g[0], "focus_diversify": g[1], "j2c_retention": j2c[g]}
                | {"j1b_r1_10": j1b[g], "j4_recall": j4[g]}
                for g in TENSION_GRID
            ],
            "chosen": dict(zip(("compress_particularize", "focus_diversify"), chosen_tensions, strict=True)),
        },
    }
    atomic_write_json(Path(args.out), out)
    print(out)
    return out


if __name__ == "__main__":
    main()
