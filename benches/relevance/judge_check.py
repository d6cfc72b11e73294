"""``python -m benches.relevance.judge_check [--judge FILE]``: is the J2 judge a sound instrument?

A judge LM measures how much of the full context's help a compressed context keeps. It is sound when
the full context helps it at all (the NLL gap between empty and full context) and when the
future-lexical oracle, which keeps the very words turns t..t+2 reuse, beats every method on it (the
protocol's sanity check). This scores the benchmark's judge (or ``--judge FILE``, a saved `SmallLM`)
on dev conversations (ShareGPT, primary track, the test recipe), never on test, at budget 0.25:

* the mean NLL of turns t..t+2 with the empty and the full context, alone (J2) and with the unigram
  cache (J2c, its weight fitted on half B for this judge);
* J2 and J2c retention of every protocol baseline (seed 0 of random and of the learned ones), of the
  oracle and of the shipped ``hybrid``, each with the paired-bootstrap CI of its difference to recency;
* whether the oracle beats every other method (``oracle_best``).

Writes ``benches/results/relevance_judge_check.json`` (or ``--out``). Choose a judge by its own NLL and
``oracle_best``, not by where a method lands.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np

from benches.relevance.budget import budget_for, compress, select_top
from benches.relevance.data import (
    load_sharegpt,
    render_turns,
    split_conversations,
)
from benches.relevance.dev_tuning import dev_bench, dev_instances, dev_parser, judge_span_nll
from benches.relevance.lm import SmallLM, fit_cache_weight
from benches.relevance.scorers import OracleScorer
from benches.relevance.stats import bootstrap_ci
from worldmodel.checkpoint import atomic_write_json
from worldmodel.run import package_version

JUDGES = ("j2", "j2c")


def retention_vs_recency(nll: dict[str, np.ndarray], name: str, j: int, n_resamples: int) -> dict:
    """J ``j``'s retention of ``name`` and its difference to recency, with a paired-bootstrap CI.

    ``nll[key]`` is ``[n, 2]`` (J2, J2c) per conversation; retention is taken on the mean NLLs."""
    cols = np.stack([nll[k][:, j] for k in ("empty", "full", name, "recency")])

    def ret(m, row):
        return (m[0] - m[row]) / (m[0] - m[1])

    value = bootstrap_ci(cols, lambda m: ret(m, 2), n_resamples)
    diff = bootstrap_ci(cols, lambda m: ret(m, 2) - ret(m, 3), n_resamples)
    return {"retention": value[0], "vs_recency": {"mean": diff[0], "lo": diff[1], "hi": diff[2]}}


def dev_nll(judge: SmallLM, cache_weight: float, dev: list, scorers: list) -> dict[str, np.ndarray]:
    """``{name: [n, 2]}`` J2 and J2c NLL of turns t..t+2 on each dev instance, for the empty and the full
    context and for each scorer's top quarter of the words (keyed by ``scorer.name``)."""
    rows: dict[str, list] = {k: [] for k in ("empty", "full", *(sc.name for sc in scorers))}
    for i, inst in enumerate(dev):
        contexts = {"empty": (), "full": inst.context}
        for sc in scorers:
            contexts[sc.name] = compress(inst, select_top(sc.score(inst), budget_for("0.25", inst.n_words)))
        for key, value in judge_span_nll(judge, contexts, inst, (0.0, cache_weight)).items():
            rows[key].append(value)
        logging.info("dev conversation %d / %d", i + 1, len(dev))
    return {k: np.asarray(v) for k, v in rows.items()}


def main(argv: list[str] | None = None) -> dict:
    p = dev_parser(__doc__, "relevance_judge_check.json", n_dev=120)
    p.add_argument("--judge", default=None, help="a saved SmallLM (default: the benchmark's cached judge)")
    p.add_argument("--n-resamples", type=int, default=10_000)
    args = p.parse_args(argv)
    s, _, bench = dev_bench(args.world_model, args.cache_dir)
    convs = split_conversations(load_sharegpt(s.max_records))
    judge, cache = bench.judge, bench.cache_fit
    if args.judge:
        judge = SmallLM.load(args.judge)
        half_b = [render_turns(c.turns) for c in convs["train_b"][: s.lm_train_convs]]
        cache = fit_cache_weight(judge, half_b, seed=s.seed)
    dev = dev_instances(bench, convs["dev"], args.n_dev)
    scorers = [b for b in bench.scorers if not b.name.startswith("random") or b.name == "random0"]
    names = [b.name for b in scorers]
    if "oracle" not in names:
        scorers, names = [*scorers, OracleScorer()], [*names, "oracle"]
    nll = dev_nll(judge, cache["weight"], dev, scorers)
    methods = {
        name: {j: retention_vs_recency(nll, name, k, args.n_resamples) for k, j in enumerate(JUDGES)}
        for name in names
    }
    others = [m for n, m in methods.items() if n != "oracle"]
    best = methods["oracle"]
    oracle_best = {j: all(best[j]["retention"] >= m[j]["retention"] for m in others) for j in JUDGES}
    out = {
        "command": " ".join(
            ["python -m benches.relevance.judge_check", *(sys.argv[1:] if argv is None else argv)]
        ),
        "version": package_version(),
        "judge": args.judge or "benchmark cache",
        "judge_config": dataclasses.asdict(judge.config),
        "cache_weight": cache["weight"],
        "n_dev": len(dev),
        "budget": 0.25,
        "nll_empty": dict(zip(JUDGES, nll["empty"].mean(0).tolist(), strict=True)),
        "nll_full": dict(zip(JUDGES, nll["full"].mean(0).tolist(), strict=True)),
        "oracle_best": oracle_best,
        "methods": methods,
    }
    atomic_write_json(Path(args.out), out)
    print(json.dumps({k: out[k] for k in ("nll_empty", "nll_full", "oracle_best")}))
    return out


if __name__ == "__main__":
    main()
