"""How the report treats methods run with several seeds.

Random runs as ``random0 .. random4``; learned methods as ``name`` (seed 0), ``name_seed1``, ... .
`merge_seeds` replaces the random seeds by one ``random`` entry and adds, for every learned method
with seed siblings, a ``name_mean`` entry: per conversation, the mean over its seeds of every
metric (so a retention of the mean NLL is the mean of the seeds' retentions). `seed_summary`
condenses the seeds of each learned method into mean +- sample std at one budget.
"""

from __future__ import annotations

import re

import numpy as np

SEEDED = re.compile(r"^(.*)_seed\d+$")
MEAN_SUFFIX = "_mean"
PER_ENTRY = ("j5_auprc", "j4_auprc")  # per-conversation lists outside ``budgets``


def seed_groups(names) -> dict[str, list[str]]:
    """``{name: [name, name_seed1, ...]}`` for learned methods whose seed-0 run is among ``names``."""
    names = list(names)
    groups: dict[str, list[str]] = {}
    for name in names:
        match = SEEDED.match(name)
        if match and match.group(1) in names:
            groups.setdefault(match.group(1), [match.group(1)]).append(name)
    return groups


def group_of(name: str) -> str:
    """The seed-0 name of a seeded method or of its mean (``wm_hybrid_seed1`` -> ``wm_hybrid``)."""
    match = SEEDED.match(name)
    if match:
        return match.group(1)
    return name[: -len(MEAN_SUFFIX)] if name.endswith(MEAN_SUFFIX) else name


def _n_rows(entry: dict) -> int | None:
    for rows in entry.get("budgets", {}).values():
        for values in rows.values():
            return len(values)
    return None


def mean_entry(entries: list[dict]) -> dict:
    """Per-conversation mean of several runs' results, on the instances all of them ran on."""
    n = min((k for k in map(_n_rows, entries) if k is not None), default=None)

    def cut(x):
        return x[:n] if isinstance(x, list) and n is not None else x

    first = entries[0]
    merged = {k: cut(v) for k, v in first.items() if k not in ("budgets", *PER_ENTRY)}
    merged["budgets"] = {
        b: {
            k: np.mean([e["budgets"][b][k][:n] for e in entries], axis=0).tolist()
            for k in rows
            if k != "kept_idx"  # word indices differ per seed; not a metric
        }
        for b, rows in first["budgets"].items()
    }
    for key in PER_ENTRY:
        if key in first:
            merged[key] = np.nanmean([cut(e[key]) for e in entries], axis=0).tolist()
    return merged


def merge_seeds(methods: dict) -> dict:
    """``random<k>`` -> one ``random`` entry first; ``name_mean`` after each seeded learned method."""
    randoms = [m for m in methods if m.startswith("random")]
    out = {"random": mean_entry([methods[m] for m in randoms])} if randoms else {}
    groups = seed_groups(methods)
    last = {members[-1]: base for base, members in groups.items()}
    for name, entry in methods.items():
        if name in randoms:
            continue
        out[name] = entry
        if name in last:
            out[last[name] + MEAN_SUFFIX] = mean_entry([methods[m] for m in groups[last[name]]])
    return out


def seed_summary(s: dict, budget: str = "0.25") -> dict[str, dict]:
    """Learned methods run with several seeds: per metric at ``budget`` the per-seed means, their mean
    and sample standard deviation (ddof 1) (J4 recall, primary J2 / J2c retention and J1b R@1/10)."""
    primary = s["tracks"].get("primary", {})
    out = {}
    for base, names in seed_groups(n for n in s["j4"] if not n.endswith(MEAN_SUFFIX)).items():
        metrics = {"j4_recall": [s["j4"][n]["budgets"][budget]["j4_recall"]["mean"] for n in names]}
        if all(n in primary for n in names):
            cells = [primary[n]["budgets"][budget] for n in names]
            metrics["j2_retention"] = [c["j2_retention_span"]["mean"] for c in cells]
            metrics["j2c_retention"] = [c["j2c_retention_span"]["mean"] for c in cells]
            metrics["j1b_r1_10"] = [c["j1b_r1_10"]["mean"] for c in cells]
        out[base] = {
            "methods": names,
            **{
                k: {"seeds": v, "mean": float(np.mean(v)), "std": float(np.std(v, ddof=1))}
                for k, v in metrics.items()
            },
        }
    return out
