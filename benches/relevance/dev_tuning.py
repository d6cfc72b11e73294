"""``python -m benches.relevance.dev_tuning``: choose the ``hybrid`` method's fast-coupling weight and
balancer tensions on the dev split, never on test.

One joint grid: the fast-coupling weight w (0 = ``reuse``, 1 = the reuse head unused) x
``compress_particularize`` x ``focus_diversify`` x ``keep_peaks`` (the balancer's compress side
keeps isolated peaks, `arrcoc.balancing.Balancer`) x ``reserved_share`` (that share of every budget
goes to the reuse head's own ranking, `arrcoc.balancing.reserved_ranking`), plus, at a fixed w and
tensions (`RECENT_AT`, the joint grid's best before), the reserved share x ``recent_share`` (that
share of every budget goes to the most recent words, `arrcoc.balancing.Balancer`). Every setting, and
every protocol baseline (seed 0 of the learned ones; random averaged over its seeds), is scored at budget
0.25 by:

* J4-dev: recall of the needed values on J4 dialogues built from the *dev* template pool, whose
  templates and filler neither the reuse head (fitted on the train pool) nor the test has seen;
* J2: the benchmark's judge LM retention on dev conversations (ShareGPT, primary track, the test
  recipe: one seeded cut each); J2c, the same judge with its unigram cache, is reported beside it;
* J1b R@1/10 against BM25 candidate sets drawn from dev itself (reported, not used by the rule).

The rule follows issue 6's target (beat every baseline on J4 and on J2): among the settings ahead of
the best baseline on both J4-dev and J2, the largest sum of the two margins ``(J4 - max_b J4_b) + (J2 -
max_b J2_b)``; when no setting is ahead on both, the largest smaller margin (ties: the shipped
setting, the smaller w, grid order). Until the 4 x 256 judge the rule read J2c: the earlier 2 x 128
judge's full context helped it by only 0.045 nats, too little for J2 to rank anything. Writes
``benches/results/relevance_dev_hybrid.json``, then exits with status 1 when the choice differs from
what arrcoc ships (`HYBRID_FAST_WEIGHT` and `arrcoc.compress.balancer_for("hybrid")`: its tensions,
peak keeping, reserved and recent shares). Uses the benchmark's cache (scorer LM, judge, reuse head).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from rank_bm25 import BM25Okapi

from arrcoc.balancing import Balancer, Tensions
from arrcoc.compress import balancer_for, realize
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
from benches.relevance.scorers import OracleScorer
from benches.relevance.synthetic import task_dialogues
from benches.relevance.wm_methods import world_model_scorers
from worldmodel.checkpoint import atomic_write_json
from worldmodel.run import package_version

ROOT = Path(__file__).resolve().parents[2]
W_GRID = (0.5, 0.75, 1.0)  # below 0.5 lost to 0.5 in every earlier grid (without a reserved share,
# which now carries the reuse head's own ranking; w < 0.5 with a share is untested)
CP_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)
FD_GRID = (0.0,)
PEAKS_GRID = (False, True)
SHARE_GRID = (0.0, 0.2, 0.3, 0.4, 0.5)
RECENT_SHARES = (0.3, 0.4, 0.5, 0.6)  # reserved shares tried with a recent share ...
RECENT_GRID = (0.1, 0.2, 0.3, 0.4, 0.5)
RECENT_AT = (0.75, 0.3, 0.0, False)  # ... at this w, compress_particularize, focus_diversify, keep_peaks
# (the best of the joint grid when the recent share was added)
J4_DEV_SEED = 7
KEYS = ("w", "compress_particularize", "focus_diversify", "keep_peaks", "reserved_share", "recent_share")
Setting = tuple  # (w, compress_particularize, focus_diversify, keep_peaks, reserved_share, recent_share)


def margins(metrics: dict, baselines: dict) -> dict[Setting, tuple[float, float]]:
    """``(J4 - max J4_b, J2 - max J2_b)``: each setting's margins over the best baseline."""
    best_j4 = max(b["j4_recall"] for b in baselines.values())
    best_j2 = max(b["j2_retention"] for b in baselines.values())
    return {g: (m["j4_recall"] - best_j4, m["j2_retention"] - best_j2) for g, m in metrics.items()}


def choose(margin: dict[Setting, tuple[float, float]], shipped: Setting) -> Setting:
    """The rule: among the settings ahead of the best baseline on both judges, the largest sum of the
    two margins; when none is, the largest smaller margin. Compared to 6 decimals (judge batching moves
    J2 by ~1e-8); ties: the shipped setting, then the smaller w, then the first in grid order."""
    ahead = {g: m for g, m in margin.items() if round(min(m), 6) > 0}
    pool, value = (ahead, sum) if ahead else (margin, min)
    return max(pool, key=lambda g: (round(value(pool[g]), 6), g == shipped, -g[0]))


def shipped_setting() -> Setting:
    b = balancer_for("hybrid")
    t = b.tensions
    return (
        HYBRID_FAST_WEIGHT,
        t.compress_particularize,
        t.focus_diversify,
        b.keep_peaks,
        b.reserved_share,
        b.recent_share,
    )


def settings_grid() -> list[Setting]:
    """The joint grid without a recent share, then reserved x recent shares at `RECENT_AT`."""
    grid = [(*g, 0.0) for g in itertools.product(W_GRID, CP_GRID, FD_GRID, PEAKS_GRID, SHARE_GRID)]
    return grid + [
        (*RECENT_AT, share, r) for share in RECENT_SHARES for r in RECENT_GRID if share + r <= 1.0 + 1e-9
    ]


def dev_parser(doc: str, out: str, n_dev: int = 200) -> argparse.ArgumentParser:
    """The dev tools' shared options: ``--n-dev``, ``--world-model``, ``--cache-dir`` and ``--out``
    (default ``benches/results/<out>``)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-dev", type=int, default=n_dev, help="dev conversations (primary track; at most)")
    p.add_argument("--world-model", default=str(ROOT / "dialogue" / "default"))
    p.add_argument("--cache-dir", default=str(ROOT / "benches" / ".cache" / "relevance"))
    p.add_argument("--out", default=str(ROOT / "benches" / "results" / out))
    return p


def dev_bench(world_model: str, cache_dir: str) -> tuple[BenchSettings, Any, Benchmark]:
    """Settings, the ``hybrid`` method and the prepared benchmark (cached scorer LM, judge, reuse head).

    Dev work reads only seed 0's scorer LM (lm_seeds is not part of the cache key)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    s = BenchSettings(lm_seeds=1)
    method = world_model_scorers(world_model, ("hybrid",))[0]
    bench = Benchmark(s, Path(cache_dir), (method,))
    bench.prepare()
    return s, method, bench


def dev_instances(bench: Benchmark, dev_convs: list, n: int) -> list[Instance]:
    """The first ``n`` primary-track instances of the dev conversations (the test recipe)."""
    instances = make_instances(dev_convs, bench.s.seed, bench.encoder.count_pieces)
    return [i for i in instances if i.track == "primary"][:n]


def judge_span_nll(judge: Any, contexts: dict, inst: Instance, cache_weights: tuple) -> dict:
    """``{name: [W]}`` mean NLL of turns t..t+2 per named context and cache weight. Methods often keep
    the same words: the judge scores each distinct context once."""
    distinct = {tuple(c): c for c in contexts.values()}
    span = judge.target_nll(list(distinct.values()), inst.targets[:TARGET_SPAN], cache_weights=cache_weights)[
        :, :, 1
    ]
    by_context = dict(zip(distinct, span, strict=True))
    return {key: by_context[tuple(c)] for key, c in contexts.items()}


def main(argv: list[str] | None = None) -> dict:
    p = dev_parser(__doc__, "relevance_dev_hybrid.json")
    p.add_argument("--n-j4", type=int, default=60, help="J4-dev dialogues (dev template pool)")
    args = p.parse_args(argv)
    s, method, bench = dev_bench(args.world_model, args.cache_dir)
    dev = dev_instances(bench, split_conversations(load_sharegpt(s.max_records))["dev"], args.n_dev)
    sets = build_candidate_sets(dev, s.seed)
    bm25 = BM25Okapi([bm25_tokens(t) or ["<empty>"] for t in sets.texts])
    j4_dev = task_dialogues(args.n_j4, "dev", J4_DEV_SEED, s.j4_ask_names_kinds)
    baselines = [b for b in bench.scorers if not isinstance(b, OracleScorer) and b is not method]
    shipped = shipped_setting()
    grid = settings_grid()

    def scores_by_name(inst: Instance) -> dict:
        """Scores [N] of every grid setting (each coupling runs once) and of every baseline."""
        messages = validate_messages([{"role": t.role, "content": t.text} for t in inst.context])
        reuse = method.relevance.score(messages, "reuse")
        fast = method.relevance.score(messages, "fast").scores["coupling"]
        out: dict = {b.name: np.asarray(b.score(inst)) for b in baselines}
        for w, cp, fd, peaks, share, recent in grid:
            scores = {**reuse.scores, "coupling": hybrid_coupling(reuse.scores["coupling"], fast, w)}
            tensions = Tensions(cp, 0.5, fd)
            balancer = Balancer(tensions, keep_peaks=peaks, reserved_share=share, recent_share=recent)
            word_scores = WordScores(scores, reserved=reuse.scores["coupling"])
            balanced = realize(messages, word_scores, balancer, None).balanced
            out[(w, cp, fd, peaks, share, recent)] = np.asarray(balanced)
        return out

    hits: dict = defaultdict(list)
    recall: dict = defaultdict(list)
    nll: dict = defaultdict(list)
    cache_weight = bench.cache_fit["weight"]
    for i, inst in enumerate(dev):
        cands = [sets.positive[i], *sets.negatives[i]]
        contexts = {"empty": (), "full": inst.context}
        for key, scores in scores_by_name(inst).items():
            contexts[key] = compress(inst, select_top(scores, budget_for("0.25", inst.n_words)))
            tokens = bm25_tokens(render_turns(contexts[key]))
            bm = np.asarray(bm25.get_batch_scores(tokens, cands)) if tokens else np.zeros(len(cands))
            hits[key].append(_rank_metrics(bm, 9)[0])
        for key, value in judge_span_nll(bench.judge, contexts, inst, (0.0, cache_weight)).items():
            nll[key].append(value)
        logging.info("dev conversation %d / %d", i + 1, len(dev))
    for inst in j4_dev:
        for key, scores in scores_by_name(inst).items():
            recall[key].append(j4_metrics(inst, scores, budget_for("0.25", inst.n_words))["j4_recall"])

    def summary(key) -> dict:
        j2, j2c = (retention(*(np.asarray(nll[k])[:, j] for k in (key, "empty", "full"))) for j in (0, 1))
        return {
            "j4_recall": float(np.mean(recall[key])),
            "j2_retention": j2,
            "j2c_retention": j2c,
            "j1b_r1_10": float(np.mean(hits[key])),
        }

    per_baseline = {b.name: summary(b.name) for b in baselines}
    randoms = [v for k, v in per_baseline.items() if k.startswith("random")]  # metrics are linear in NLL
    ref = {k: v for k, v in per_baseline.items() if not k.startswith("random")}
    ref["random"] = {m: float(np.mean([r[m] for r in randoms])) for m in randoms[0]}
    metrics = {g: summary(g) for g in grid}
    margin = margins(metrics, ref)
    chosen = choose(margin, shipped)
    for g in grid:
        logging.info("setting %s: %s, margins %.3f / %.3f", g, metrics[g], *margin[g])
    out = {
        "command": " ".join(
            ["python -m benches.relevance.dev_tuning", *(sys.argv[1:] if argv is None else argv)]
        ),
        "version": package_version(),
        "settings": dataclasses.asdict(s),
        "n_dev": len(dev),
        "n_j4_dev": len(j4_dev),
        "judge_cache_weight": cache_weight,
        "rule": "at 0.25, among settings ahead of the best baseline on J4-dev recall and dev J2 retention, "
        "the largest sum of the two margins (none ahead: the largest smaller margin)",
        "baselines": ref,
        "grid": [
            dict(zip(KEYS, g, strict=True))
            | {"margin_j4": margin[g][0], "margin_j2": margin[g][1]}
            | metrics[g]
            for g in grid
        ],
        "chosen": dict(zip(KEYS, chosen, strict=True)),
    }
    atomic_write_json(Path(args.out), out)
    print(json.dumps(out["chosen"]), "margins", [round(m, 4) for m in margin[chosen]])
    if chosen != shipped:
        raise SystemExit(
            f"dev tuning chose {out['chosen']}, but arrcoc ships {shipped} for hybrid: update "
            "HYBRID_FAST_WEIGHT (arrcoc/knowing.py), METHOD_TENSIONS, KEEP_PEAKS, RESERVED_SHARE and "
            "RECENT_SHARE (arrcoc/compress.py)"
        )
    return out


if __name__ == "__main__":
    main()
