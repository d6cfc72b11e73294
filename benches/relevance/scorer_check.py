"""``python -m benches.relevance.scorer_check --scorer-lm FILE [...]``: are the LM baselines strong enough?

Self-information and contrast read a small scorer LM trained on half A (`BenchSettings.lm`). A
baseline handicapped by a weak LM makes any win over it cheap, so this scores the two baselines with
the benchmark's scorer LM and with each ``--scorer-lm`` (a saved `SmallLM`, e.g. one trained on half A
with the judge's settings) on the dev split, never on test, at budget 0.25:

* J2 and J2c retention (the benchmark's judge) on dev conversations (ShareGPT, primary track, the
  test recipe), each with the paired-bootstrap CI of its difference to recency;
* J4-dev recall of the needed values on J4 dialogues from the *dev* template pool.

Recency, the shipped ``hybrid`` and the oracle are scored beside them for scale. Writes
``benches/results/relevance_scorer_check.json`` (or ``--out``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from benches.relevance.budget import budget_for
from benches.relevance.data import load_sharegpt, split_conversations
from benches.relevance.dev_tuning import J4_DEV_SEED, dev_bench, dev_instances, dev_parser
from benches.relevance.judge_check import JUDGES, dev_nll, retention_vs_recency
from benches.relevance.judges import j4_metrics
from benches.relevance.lm import SmallLM
from benches.relevance.scorers import ContrastScorer, OracleScorer, SelfInformationScorer
from benches.relevance.synthetic import task_dialogues
from worldmodel.checkpoint import atomic_write_json
from worldmodel.run import package_version

KEPT = ("recency", "selfinfo", "contrast", "wm_hybrid")  # the benchmark's own scorers shown


def lm_scorers(path: str) -> list:
    """Self-information and contrast under the `SmallLM` at ``path``, named ``<method>_<file stem>``."""
    lm, stem = SmallLM.load(path), Path(path).name.split(".")[0]
    return [SelfInformationScorer(lm, f"selfinfo_{stem}"), ContrastScorer(lm, f"contrast_{stem}")]


def main(argv: list[str] | None = None) -> dict:
    p = dev_parser(__doc__, "relevance_scorer_check.json")
    p.add_argument("--scorer-lm", action="append", default=[], help="a saved SmallLM (repeatable)")
    p.add_argument("--n-j4", type=int, default=60, help="J4-dev dialogues (dev template pool)")
    p.add_argument("--n-resamples", type=int, default=10_000)
    args = p.parse_args(argv)
    s, _, bench = dev_bench(args.world_model, args.cache_dir)
    dev = dev_instances(bench, split_conversations(load_sharegpt(s.max_records))["dev"], args.n_dev)
    scorers = [b for b in bench.scorers if b.name in KEPT] + [OracleScorer()]
    scorers += [sc for path in args.scorer_lm for sc in lm_scorers(path)]
    nll = dev_nll(bench.judge, bench.cache_fit["weight"], dev, scorers)
    j4_dev = task_dialogues(args.n_j4, "dev", J4_DEV_SEED, s.j4_ask_names_kinds)
    methods = {}
    for sc in scorers:
        recall = [j4_metrics(d, sc.score(d), budget_for("0.25", d.n_words))["j4_recall"] for d in j4_dev]
        methods[sc.name] = {
            **{j: retention_vs_recency(nll, sc.name, k, args.n_resamples) for k, j in enumerate(JUDGES)},
            "j4_dev_recall": float(np.mean(recall)),
        }
    out = {
        "command": " ".join(
            ["python -m benches.relevance.scorer_check", *(sys.argv[1:] if argv is None else argv)]
        ),
        "version": package_version(),
        "scorer_lms": args.scorer_lm,
        "n_dev": len(dev),
        "n_j4_dev": len(j4_dev),
        "budget": 0.25,
        "methods": methods,
    }
    atomic_write_json(Path(args.out), out)
    print(
        json.dumps(
            {
                n: {k: v if k == "j4_dev_recall" else v["retention"] for k, v in m.items()}
                for n, m in methods.items()
            }
        )
    )
    return out


if __name__ == "__main__":
    main()
