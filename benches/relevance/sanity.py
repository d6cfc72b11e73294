"""The protocol's sanity checks, run before any number is reported."""

from __future__ import annotations

import itertools
import logging

import numpy as np

from benches.relevance.budget import budget_labels
from benches.relevance.data import Instance
from benches.relevance.synthetic import POOLS

log = logging.getLogger("benches.relevance")


class SanityError(ValueError):
    """A protocol sanity check failed; no number may be reported. ``args[1]`` holds every check."""


def sanity_checks(
    raw: dict, instances: dict[str, list[Instance]], train_roots: set[str], quick: bool
) -> dict:
    """The protocol's checks; raises SanityError (listing every failure) when one fails."""
    failures: list[str] = []
    checks: dict[str, bool] = {}
    leaked = {i.root_id for v in instances.values() for i in v} & train_roots
    checks["no_test_root_in_training"] = not leaked
    checks["j4_templates_disjoint"] = not any(
        set(getattr(a, f)) & set(getattr(b, f))
        for a, b in itertools.combinations(POOLS.values(), 2)
        for f in a.__dataclass_fields__
    )
    exact = [raw["j4"][m]["budgets_exact"] for m in raw["j4"]]
    for tr, methods in raw["tracks"].items():
        for _m, res in methods.items():
            for _label, rows in res["budgets"].items():
                exact.append(rows["kept"] == rows["expected_budget"] == rows["budget"])
        b = methods["bounds"]["budgets"]
        for metric, sign in (
            ("j1_r1_10", 1),
            ("j1b_r1_10", 1),
            ("j2_nll_span", -1),
            ("j2_nll_t", -1),
            ("j2c_nll_span", -1),
            ("j2c_nll_t", -1),
            ("j3_fidelity", 1),
            ("j1_mrr", 1),
            ("j1b_mrr", 1),
        ):
            full, empty = np.mean(b["1"][metric]), np.mean(b["0"][metric])
            checks[f"{tr}:full_beats_empty:{metric}"] = bool(sign * (full - empty) > 0)
        mid = budget_labels(tr)[1]
        for j2 in ("j2", "j2c"):
            oracle_j2 = np.mean(methods["oracle"]["budgets"][mid][f"{j2}_nll_span"])
            checks[f"{tr}:oracle_best:{j2}@{mid}"] = all(
                oracle_j2 <= np.mean(r["budgets"][mid][f"{j2}_nll_span"])
                for m, r in methods.items()
                if m not in ("bounds", "oracle")
            )
        oracle_j5 = np.nanmean(methods["oracle"]["j5_auprc"])
        checks[f"{tr}:oracle_best:j5"] = all(
            oracle_j5 >= np.nanmean(r["j5_auprc"])
            for m, r in methods.items()
            if m not in ("bounds", "oracle")
        )
    checks["budgets_exact"] = all(exact)
    oracle_j4 = np.mean(raw["j4"]["oracle"]["budgets"]["0.25"]["j4_recall"])
    checks["j4:oracle_best:recall@0.25"] = all(
        oracle_j4 >= np.mean(r["budgets"]["0.25"]["j4_recall"]) for r in raw["j4"].values()
    )
    failures = [k for k, ok in checks.items() if not ok]
    # A lexical oracle is a ceiling by construction for J4 and J5, not for an LM's NLL (J2):
    # that one is reported and warned about but does not stop the run.
    blocking = [k for k in failures if ":oracle_best:j2" not in k]
    for name in failures:
        log.warning("sanity check failed%s: %s", "" if name in blocking else " (reported only)", name)
    if blocking and not quick:
        raise SanityError("sanity checks failed: " + ", ".join(blocking), checks)
    return checks
