"""Turn raw per-conversation results into statistics, JSON, a markdown section and plots.

Random seeds are averaged per conversation into one ``random`` row, and each learned method run
with several seeds gets a ``<name>_mean`` row (`benches.relevance.seeds`). For the candidate
method (the world-model method when present) every difference to each baseline gets a
paired bootstrap CI and a p-value (McNemar for R@1, Wilcoxon otherwise), Holm-corrected
across baselines x budgets x judges (full test set and long-range subset together).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from benches.relevance import stats
from benches.relevance.seeds import group_of, merge_seeds
from benches.relevance.verdict import ceiling_lines, verdict_lines
from worldmodel.checkpoint import atomic_write_text

MARK_START, MARK_END = "<!-- relevance:start -->", "<!-- relevance:end -->"
USAGE = """Usage: `make bench-relevance` (= `python -m benches.relevance`) runs the full benchmark, writes
`benches/results/relevance.json` and regenerates this section and the plots under `docs/img/`;
`python -m benches.relevance --quick` is the CI-sized smoke run (`benches/results/relevance_quick.json`,
docs untouched unless `--docs FILE`). Options: `--test-per-track N`, `--long-per-track N`, `--n-j4 N`,
`--lm-steps N`, `--lm-seeds N` (default 3), `--judge-steps N`, `--world-model DIR|none` (default: the
shipped `dialogue/default`), `--wm-methods fast,exact,reuse,reuse_seed1,reuse_seed2,hybrid,...`,
`--wm-tracks primary,long`, `--candidate METHOD` (default: `wm_hybrid_mean`, the per-conversation
mean over `wm_hybrid`'s seeds, each seed also judged alone; else `wm_hybrid`, else `wm_reuse`),
`--cache-dir DIR`.
Trained LMs, candidate sets, embeddings and each method's per-conversation results are cached under
`benches/.cache/relevance/<mode>-<settings hash>/`; a missing or truncated file is rebuilt and an
interrupted run resumes with the methods not finished yet.

Methods keep exactly `B = floor(r * N)` context words (long track: 64/128/256 words) in their original
order; speaker tags are forced and not counted. Judges: J1 MiniLM retrieval of turn t among 10 / 100
saved candidates (same role, same log2-length bucket, other test conversations), and J1 hard: R@1
among turn t and up to 9 later user turns of the same conversation (t+2 on; never context turns,
which a full context contains verbatim), over the conversations that have one; J1b the same with
BM25; J2 NLL of turn t and t..t+2 under a GPT-2 judge trained with its own BPE on train half B
(4 layers x 256, 512 positions, 2400 steps of 8 windows, ~4 passes; retention =
(NLL_empty - NLL) / (NLL_empty - NLL_full)); J2c the same judge interpolated with a unigram cache of the
tokens it has read, `p = (1 - w) p_LM + w count(token) / len(history)` (Kuhn & De Mori 1990; Grave et al.
2017), `w` chosen on half B (`judge_cache.json` in the cache); J3 Spearman
fidelity of the 100 candidate scores against the full context; J4 synthetic task dialogues (recall of
the needed slot values, decoy rate, AUPRC; templates and filler disjoint from the training pool);
J5 AUPRC against content words reused in turns t..t+3."""
TABLE_METRICS = (
    "j1_r1_10",
    "j1_r1_100",
    "j1_mrr",
    "j1_hard_r1",
    "j1b_r1_10",
    "j1b_r1_100",
    "j1b_mrr",
    "j3_fidelity",
    "j2_nll_t",
    "j2_nll_span",
    "j2c_nll_t",
    "j2c_nll_span",
)
J2_JUDGES = {"j2": "J2", "j2c": "J2c"}  # the judge LM alone; with its unigram cache


def _ci(values, n_resamples: int, seed: int) -> dict:
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    mean, lo, hi = stats.mean_ci(x, n_resamples=n_resamples, seed=seed)
    return {"mean": mean, "lo": lo, "hi": hi, "n": int(len(x))}


def _retention(nll, empty, full, n_resamples: int, seed: int, subset=None) -> dict:
    cols = np.stack([nll, empty, full])
    cols = cols if subset is None else cols[:, subset]
    mean, lo, hi = stats.bootstrap_ci(cols, lambda m: (m[1] - m[0]) / (m[1] - m[2]), n_resamples, seed)
    return {"mean": mean, "lo": lo, "hi": hi, "n": int(cols.shape[1])}


def summarise_track(methods: dict, n_resamples: int, seed: int) -> dict:
    """Per method and budget: mean + CI of every metric, retention of turn t and of t..t+2."""
    bounds = methods["bounds"]["budgets"]
    empty, full = bounds["0"], bounds["1"]
    out: dict = {
        "bounds": {b: {k: _ci(bounds[b][k], n_resamples, seed) for k in TABLE_METRICS} for b in bounds}
    }
    for name, res in merge_seeds(methods).items():
        if name == "bounds":
            continue
        entry = {"j5_auprc": _ci(res["j5_auprc"], n_resamples, seed), "budgets": {}}
        for b, rows in _by_size(res["budgets"]):
            cell = {k: _ci(rows[k], n_resamples, seed) for k in TABLE_METRICS}
            n = len(rows["j2_nll_t"])  # a method run on a prefix of the instances is paired on it
            for j2 in J2_JUDGES:
                for span in ("t", "span"):
                    key = f"{j2}_nll_{span}"
                    cell[f"{j2}_retention_{span}"] = _retention(
                        rows[key], empty[key][:n], full[key][:n], n_resamples, seed
                    )
            entry["budgets"][b] = cell
        out[name] = entry
    return out


def _by_size(budgets: dict) -> list[tuple[str, Any]]:
    """Budget items smallest first (``"64w"`` before ``"128w"``), whatever order a cache stored."""
    return sorted(budgets.items(), key=lambda item: float(item[0].rstrip("w")))


def summarise_j4(methods: dict, n_resamples: int, seed: int) -> dict:
    out = {}
    for name, res in merge_seeds(methods).items():
        out[name] = {
            "j4_auprc": _ci(res["j4_auprc"], n_resamples, seed),
            "budgets": {
                b: {k: _ci(v, n_resamples, seed) for k, v in rows.items()}
                for b, rows in _by_size(res["budgets"])
            },
        }
    return out


def _diff(a, b, n_resamples: int, seed: int) -> dict:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mean, lo, hi = stats.diff_ci(a, b, n_resamples=n_resamples, seed=seed)
    return {"mean": mean, "lo": lo, "hi": hi, "p": stats.paired_p(a, b), "n": int(len(a))}


def _column(table: dict, key: str, keep: np.ndarray) -> np.ndarray:
    """``table[key]`` on the paired prefix (``len(keep)`` instances) restricted to ``keep``."""
    return np.asarray(table[key][: len(keep)], dtype=np.float64)[keep]


def _row(track: str, subset: str, judge: str, base: str, budget: str, diff: dict) -> dict:
    return {"track": track, "subset": subset, "judge": judge, "baseline": base, "budget": budget, **diff}


def compare(raw: dict, candidate: str, n_resamples: int, seed: int) -> list[dict]:
    """Candidate-minus-baseline differences with CIs and Holm-adjusted p-values.

    J2 is compared on NLL of t..t+2 (sign flipped: positive = candidate better) and on
    retention; J4 on recall@B; J1 / J1b on R@1 of 10. A candidate or baseline run on a prefix of
    the instances is paired with the other on that prefix.
    """
    rows: list[dict] = []
    for track, methods in raw["tracks"].items():
        merged = merge_seeds(methods)
        if candidate not in merged:
            continue
        n = len(merged[candidate]["root_ids"])
        bounds = methods["bounds"]["budgets"]
        subsets = {
            "all": np.ones(n, bool),
            "long_range": np.asarray(methods["bounds"]["long_range"][:n], bool),
        }
        for base, res in merged.items():
            if base in ("bounds", "oracle") or group_of(base) == group_of(candidate):
                continue  # the candidate's own seeds are not its baselines
            m = min(n, len(res["root_ids"]))  # either side may have run on a prefix
            for b, cells in res["budgets"].items():
                cand = merged[candidate]["budgets"][b]
                for subset, keep in subsets.items():
                    keep = keep[:m]
                    if keep.sum() < 2:
                        continue

                    col = functools.partial(_column, keep=keep)
                    for j2, judge in J2_JUDGES.items():
                        key = f"{j2}_nll_span"
                        nll_c, nll_b = col(cand, key), col(cells, key)
                        d = _diff(-nll_c, -nll_b, n_resamples, seed)
                        cols = np.stack([nll_c, nll_b, col(bounds["0"], key), col(bounds["1"], key)])
                        gap = stats.bootstrap_ci(
                            cols, lambda m: (m[1] - m[0]) / (m[2] - m[3]), n_resamples, seed
                        )
                        d["retention"] = {"mean": gap[0], "lo": gap[1], "hi": gap[2]}
                        rows.append(_row(track, subset, judge, base, b, d))
                    for metric, judge in (("j1_r1_10", "J1"), ("j1b_r1_10", "J1b")):
                        diff = _diff(col(cand, metric), col(cells, metric), n_resamples, seed)
                        rows.append(_row(track, subset, judge, base, b, diff))
    j4 = merge_seeds(raw["j4"])
    if candidate in j4:
        n = len(j4[candidate]["root_ids"])
        for base, res in j4.items():
            if base == "oracle" or group_of(base) == group_of(candidate):
                continue
            m = min(n, len(res["root_ids"]))
            for b, cells in res["budgets"].items():
                a, c = j4[candidate]["budgets"][b]["j4_recall"][:m], cells["j4_recall"][:m]
                rows.append(_row("j4", "all", "J4", base, b, _diff(a, c, n_resamples, seed)))
    adjusted = stats.holm([r["p"] for r in rows]) if rows else []
    for r, p in zip(rows, adjusted, strict=True):
        r["p_holm"] = float(p)
    return rows


METRIC_OF = {"J2": "retention", "J2c": "retention", "J4": "recall", "J1b": "R@1/10", "J1": "R@1/10"}


def _n(cell: dict, size: int) -> str:
    """`` (n=K)`` for a method run on a prefix of the ``size`` instances, else nothing."""
    return f" (n={cell['n']})" if cell["n"] != size else ""


def _fmt(cell: dict, digits: int = 3) -> str:
    return f"{cell['mean']:.{digits}f} [{cell['lo']:.{digits}f}, {cell['hi']:.{digits}f}]"


def markdown(summary: dict, command: str, plots: list[str]) -> str:
    """The "Relevance" section of docs/benchmarks.md."""
    s = summary
    lines = [
        MARK_START,
        "## Relevance",
        "",
        "Which way of choosing context words best preserves what the future "
        "turns need, at an exact word budget? Protocol: `/work/shared/docs/relevance-benchmark.md`; code: "
        "`benches/relevance`. Regenerated by:",
        "",
        "```",
        command,
        "```",
        "",
        USAGE,
        "",
        f"Sizes: {s['sizes']}. Mean [95% paired-bootstrap CI over conversations, {s['n_resamples']} "
        "resamples]. Random is the per-conversation mean over "
        f"{s['random_seeds']} seeds. J1 uses the frozen MiniLM and favours anything trained on "
        "MiniLM targets.",
        "",
    ]
    for track, methods in s["tracks"].items():
        lines += [
            f"### Track `{track}`",
            "",
            "| method | budget | J1 R@1/10 | J1 hard R@1 | J1b R@1/10 | J2 NLL t..t+2 | J2 retention "
            "| J2c retention | J3 fidelity | J5 AUPRC |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for b, cell in methods["bounds"].items():
            lines.append(
                f"| {'empty' if b == '0' else 'full'} | {b} | {cell['j1_r1_10']['mean']:.3f} | "
                f"{cell['j1_hard_r1']['mean']:.3f} | "
                f"{cell['j1b_r1_10']['mean']:.3f} | {cell['j2_nll_span']['mean']:.3f} | "
                f"{b} | {b} | {cell['j3_fidelity']['mean']:.3f} | |"
            )
        for name, entry in methods.items():
            if name == "bounds":
                continue
            for b, cell in entry["budgets"].items():
                lines.append(
                    f"| {name}{_n(cell['j1_r1_10'], s['sizes'][track])} | {b} | "
                    f"{cell['j1_r1_10']['mean']:.3f} | {cell['j1_hard_r1']['mean']:.3f} | "
                    f"{cell['j1b_r1_10']['mean']:.3f} | "
                    f"{cell['j2_nll_span']['mean']:.3f} | {_fmt(cell['j2_retention_span'])} | "
                    f"{_fmt(cell['j2c_retention_span'])} | {cell['j3_fidelity']['mean']:.3f} | "
                    f"{entry['j5_auprc']['mean']:.3f} |"
                )
        lines.append("")
    lines += [
        "### J4 synthetic task dialogues",
        "",
        "| method | budget | recall@B | decoy rate | AUPRC |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, entry in s["j4"].items():
        for b, cell in entry["budgets"].items():
            lines.append(
                f"| {name}{_n(cell['j4_recall'], s['sizes']['j4'])} | {b} | {_fmt(cell['j4_recall'])} | "
                f"{cell['j4_decoy']['mean']:.3f} | "
                f"{entry['j4_auprc']['mean']:.3f} |"
            )
    if s.get("seeds"):
        lines += [
            "",
            "### Seeds of the learned methods at budget 0.25 (mean +- sample std; per seed)",
            "",
            "| method | J4 recall | J2 retention (primary) | J2c retention (primary) "
            "| J1b R@1/10 (primary) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for base, g in s["seeds"].items():
            cells = [
                f"{g[k]['mean']:.3f} +- {g[k]['std']:.3f} ({' / '.join(f'{v:.3f}' for v in g[k]['seeds'])})"
                if k in g
                else ""
                for k in ("j4_recall", "j2_retention", "j2c_retention", "j1b_r1_10")
            ]
            lines.append(f"| {base} ({len(g['methods'])} seeds) | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"### Candidate `{s['candidate']}` minus each baseline at budget 0.25",
        "",
        "| baseline | judge | subset | difference [95% CI] | Holm p |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in s["comparisons"]:
        if r["budget"] == "0.25" and r["judge"] in ("J2", "J2c", "J4", "J1b"):
            cell = r["retention"] if r["judge"] in ("J2", "J2c") else r
            lines.append(
                f"| {r['baseline']} | {r['judge']} {METRIC_OF[r['judge']]} | "
                f"{r['subset']} | {_fmt(cell)} | {r['p_holm']:.3g} |"
            )
    lines += ["", *verdict_lines(s), "", *ceiling_lines(s), ""]
    lines += [
        "",
        "Sanity checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in s["sanity"].items()),
        "",
    ]
    lines += [f"![{Path(p).stem}]({p})" for p in plots]
    lines += ["", MARK_END]
    return "\n".join(lines)


def write_section(doc: Path, section: str) -> None:
    """Replace the text between the relevance markers of ``doc`` (append the section if absent)."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        text = head + section + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(doc, text)


def plot(summary: dict, img_dir: Path) -> list[Path]:
    """Retention (J2, primary track) and J4 recall versus budget, one line per method."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from worldmodel.checkpoint import atomic_write_bytes

    paths = []
    panels = [
        (
            "relevance_retention.png",
            summary["tracks"].get("primary", {}),
            "j2_retention_span",
            "J2 retention (t..t+2), primary track",
        ),
        (
            "relevance_retention_cache.png",
            summary["tracks"].get("primary", {}),
            "j2c_retention_span",
            "J2c retention (judge + unigram cache), primary",
        ),
        ("relevance_j4_recall.png", summary["j4"], "j4_recall", "J4 recall of needed words"),
    ]
    for filename, methods, metric, title in panels:
        if not methods:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.set_prop_cycle(color=plt.cm.tab20.colors)  # 20 distinct colours: methods outnumber tab10
        for name, entry in methods.items():
            if name == "bounds":
                continue
            budgets = list(entry["budgets"])
            ax.plot(
                [float(b) for b in budgets],
                [entry["budgets"][b][metric]["mean"] for b in budgets],
                marker="o",
                label=name,
                linestyle="--" if name == "oracle" else "-",
            )
        ax.set_xlabel("budget (fraction of context words)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        paths.append(atomic_write_bytes(img_dir / filename, buffer.getvalue()))
    return paths
