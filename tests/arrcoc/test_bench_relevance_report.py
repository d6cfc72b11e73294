"""Unit tests of the relevance benchmark's report: seed means, comparisons, verdicts, ceiling, sections."""

from __future__ import annotations

import numpy as np
import pytest

from benches.relevance.report import write_section
from benches.relevance.seeds import merge_seeds, seed_summary
from benches.relevance.verdict import edge_note, narrowest, targets_met, verdict, verdict_lines


def test_merge_seeds_averages_random_seeds_per_conversation():
    methods = {
        "random0": {"budgets": {"0.1": {"m": [0.0, 1.0]}}, "j5_auprc": [0.2, 0.4]},
        "random1": {"budgets": {"0.1": {"m": [1.0, 1.0]}}, "j5_auprc": [0.4, float("nan")]},
        "recency": {"budgets": {}, "j5_auprc": []},
    }
    merged = merge_seeds(methods)
    assert list(merged) == ["random", "recency"]
    assert merged["random"]["budgets"]["0.1"]["m"] == [0.5, 1.0]
    assert merged["random"]["j5_auprc"] == pytest.approx([0.3, 0.4])


def test_merge_seeds_adds_a_per_conversation_seed_mean_after_each_learned_method():
    def run(nll, auprc):
        return {
            "root_ids": ["a", "b", "c"][: len(nll)],
            "budgets": {"0.25": {"j2_nll_span": nll, "kept_idx": [[0]] * len(nll)}},
            "j5_auprc": auprc,
        }

    methods = {
        "wm": run([1.0, 2.0, 3.0], [0.5, 0.5, 0.5]),
        "wm_seed1": run([3.0, 4.0, 5.0], [0.7, float("nan"), 0.1]),
        "wm_seed2": run([2.0, 3.0], [0.3, 0.2]),  # ran on a prefix of two conversations
        "recency": run([9.0], [0.0]),
        "orphan_seed1": run([1.0], [1.0]),  # no seed-0 run: not a group
    }
    merged = merge_seeds(methods)
    assert list(merged) == ["wm", "wm_seed1", "wm_seed2", "wm_mean", "recency", "orphan_seed1"]
    mean = merged["wm_mean"]
    assert mean["budgets"]["0.25"]["j2_nll_span"] == pytest.approx([2.0, 3.0])  # the common prefix
    assert "kept_idx" not in mean["budgets"]["0.25"] and mean["root_ids"] == ["a", "b"]
    assert mean["j5_auprc"] == pytest.approx([0.5, 0.35])
    assert merged["wm"] is methods["wm"]  # the seeds stay as they were


def test_compare_judges_a_seed_mean_against_baselines_but_not_its_own_seeds():
    from benches.relevance.report import compare

    def run(nll, recall):
        n = len(nll)
        return {
            "root_ids": [f"c{i}" for i in range(n)],
            "long_range": [True, False] * (n // 2),
            "budgets": {
                "0.25": {
                    **{f"{j}_nll_span": nll for j in ("j2", "j2c")},
                    "j1_r1_10": [1.0] * n,
                    "j1b_r1_10": [1.0] * n,
                }
            },
            "j4": {"root_ids": [f"d{i}" for i in range(n)], "budgets": {"0.25": {"j4_recall": recall}}},
        }

    rng = np.random.default_rng(0)
    runs = {
        "wm": run(list(3.0 + 0.1 * rng.random(8)), [0.9] * 8),
        "wm_seed1": run(list(3.0 + 0.1 * rng.random(8)), [0.8] * 8),
        "recency": run(list(3.5 + 0.1 * rng.random(8)), [0.1] * 8),
    }
    bounds = {"0": {f"{j}_nll_span": [4.0] * 8 for j in ("j2", "j2c")}}
    bounds["1"] = {f"{j}_nll_span": [3.0] * 8 for j in ("j2", "j2c")}
    primary = {"bounds": {"budgets": bounds, "long_range": [True, False] * 4}}
    primary |= {m: {k: v for k, v in r.items() if k != "j4"} for m, r in runs.items()}
    raw = {"tracks": {"primary": primary}, "j4": {m: r["j4"] for m, r in runs.items()}}
    rows = compare(raw, "wm_mean", n_resamples=200, seed=0)
    assert {r["baseline"] for r in rows} == {"recency"}  # neither wm nor wm_seed1 is a baseline
    j4 = next(r for r in rows if r["judge"] == "J4")
    assert j4["mean"] == pytest.approx(0.85 - 0.1)  # the seed mean's recall
    v = verdict(rows)
    assert v["recency"]["wins_j2"]
    assert targets_met(v) == {"wins_j2": [], "wins_j2c": [], "wins": []}


def test_verdict_applies_issue_and_protocol_rules():
    def row(judge, subset, lo, base="recency"):
        r = {"track": "j4" if judge == "J4" else "primary", "subset": subset, "judge": judge}
        r.update(baseline=base, budget="0.25", lo=lo, mean=lo + 0.1, hi=lo + 0.2)
        if judge in ("J2", "J2c"):
            r["retention"] = {"lo": lo, "mean": lo + 0.1, "hi": lo + 0.2}
        return r

    rows = [row("J4", "all", 0.1), row("J2", "all", 0.05), row("J2", "long_range", -0.01)]
    rows += [row("J1b", "all", 0.02), row("J1b", "long_range", 0.01), row("J1", "all", 0.3)]
    rows += [
        row("J4", "all", 0.1, "tfidf"),
        row("J1b", "all", 0.02, "tfidf"),
        row("J1b", "long_range", -0.1, "tfidf"),
    ]
    rows += [row("J4", "all", 0.1, "embedding"), row("J2c", "all", 0.1, "embedding")]
    rows += [row("J2c", "long_range", 0.01, "embedding"), row("J2", "all", 0.2, "embedding")]
    rows += [{**row("J4", "all", -0.1, "random"), "budget": "0.1"}]  # other budgets are ignored
    v = verdict(rows)
    assert set(v) == {"recency", "tfidf", "embedding"}
    assert v["recency"]["j2_all"] and not v["recency"]["j2_long_range"]
    assert not v["recency"]["wins_j2"] and v["recency"]["wins"]  # J4 + J1b on both subsets
    assert not v["tfidf"]["wins"] and not v["tfidf"]["wins_j2"]  # J1b fails on long-range, no J2
    e = v["embedding"]  # J2c on both subsets; the plain J2 only on all
    assert e["wins_j2c"] and not e["wins_j2"] and e["wins"] and not v["recency"]["wins_j2c"]
    missed = targets_met(v)
    assert missed == {
        "wins_j2": ["recency", "tfidf", "embedding"],
        "wins_j2c": ["recency", "tfidf"],
        "wins": ["tfidf"],
    }
    seed_ok = {"wins_j2": [], "wins_j2c": [], "wins": []}
    lines = verdict_lines(
        {"candidate": "wm_mean", "verdict_at_0.25": v, "seed_verdicts": {"wm": missed, "wm_seed1": seed_ok}}
    )
    assert "J4 + J2 target NOT met" in lines[0] and "rule NOT met" in lines[0]
    assert (
        lines[2].startswith("- `wm` alone")
        and "J4 + J2 NOT met (against recency, tfidf, embedding)" in lines[2]
    )
    assert "protocol NOT met (against tfidf)" in lines[2]
    assert lines[3] == "- `wm_seed1` alone as the candidate: J4 + J2 MET; J4 + J2c MET; protocol MET."
    tight = narrowest(rows)  # J2 long-range against recency, lower bound -0.01
    assert (tight["baseline"], tight["judge"], tight["subset"], tight["lo"]) == (
        "recency",
        "J2",
        "long_range",
        -0.01,
    )
    said = verdict_lines({"candidate": "wm_mean", "verdict_at_0.25": v, "comparisons": rows})[1]
    assert said.startswith("Narrowest margin of the J4 + J2 target: `recency` on J2 (long-range), +0.090")
    assert said.endswith("(not above zero).")
    assert "sign can change" in edge_note(0.004) and edge_note(0.02) == "."


def test_ceiling_keeps_the_oracle_margins_and_names_the_unresolved_methods():
    from benches.relevance.verdict import ceiling, ceiling_lines

    def row(judge, subset, base, lo, track="primary", budget="0.25"):
        ret = {"mean": lo + 0.05, "lo": lo, "hi": lo + 0.1}
        return {
            "track": track,
            "subset": subset,
            "judge": judge,
            "baseline": base,
            "budget": budget,
            "retention": ret,
        }

    rows = [row("J2", "all", "recency", -0.04), row("J2", "all", "tfidf", 0.3)]
    rows += [row("J2", "long_range", "recency", 0.01), row("J2c", "all", "recency", 0.2)]
    rows += [row("J2", "all", "random", -0.5, budget="0.1"), row("J2", "all", "random", -0.5, track="long")]
    room = ceiling(rows)
    assert set(room) == {"j2_all", "j2_long_range", "j2c_all"}  # other budgets and tracks dropped
    assert room["j2_all"]["recency"] == pytest.approx({"mean": 0.01, "lo": -0.04, "hi": 0.06})
    lines = ceiling_lines({"ceiling_at_0.25": room})
    assert len(lines) == 2  # heading + J2 all; tfidf and the CIs above zero are not listed
    assert "J2 retention at 0.25, all" in lines[1] and "`recency` +0.010 [-0.040, 0.060]" in lines[1]
    assert "tfidf" not in lines[1]
    assert ceiling_lines({}) == []


def test_seed_summary_groups_seeds_of_learned_methods():
    def cell(x):
        return {"mean": x, "lo": x, "hi": x, "n": 3}

    j4 = {
        n: {"budgets": {"0.25": {"j4_recall": cell(v)}}}
        for n, v in [
            ("selfinfo", 0.5),
            ("selfinfo_seed1", 0.7),
            ("selfinfo_seed2", 0.6),
            ("recency", 0.2),
            ("x_seed1", 0.1),
        ]
    }
    primary = {
        n: {
            "budgets": {
                "0.25": {
                    "j2_retention_span": cell(v),
                    "j2c_retention_span": cell(1 - v),
                    "j1b_r1_10": cell(1 - v),
                }
            }
        }
        for n, v in [("selfinfo", 0.2), ("selfinfo_seed1", 0.4), ("selfinfo_seed2", 0.3)]
    }
    out = seed_summary({"j4": j4, "tracks": {"primary": primary}})
    assert set(out) == {"selfinfo"}  # x_seed1 has no seed-0 run, recency no seeds
    g = out["selfinfo"]
    assert g["methods"] == ["selfinfo", "selfinfo_seed1", "selfinfo_seed2"]
    assert g["j4_recall"]["mean"] == pytest.approx(0.6)
    assert g["j4_recall"]["std"] == pytest.approx(0.1)  # sample std (ddof 1) of 0.5, 0.7, 0.6
    assert g["j2_retention"]["seeds"] == [0.2, 0.4, 0.3] and g["j1b_r1_10"]["mean"] == pytest.approx(0.7)
    assert g["j2c_retention"]["seeds"] == [0.8, 0.6, 0.7]


def test_write_section_replaces_only_between_markers(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("# Benchmarks\n\n## Control\nkeep me\n")
    write_section(doc, "<!-- relevance:start -->\nv1\n<!-- relevance:end -->")
    write_section(doc, "<!-- relevance:start -->\nv2\n<!-- relevance:end -->")
    text = doc.read_text()
    assert "keep me" in text and "v2" in text and "v1" not in text and text.count("relevance:start") == 1


def test_summaries_list_budgets_smallest_first_whatever_the_cache_order():
    from benches.relevance.report import summarise_j4

    cells = {b: {"j4_recall": [0.5, 0.7]} for b in ("256w", "64w", "128w")}  # a sorted-keys cache
    out = summarise_j4({"recency": {"j4_auprc": [0.1, 0.2], "budgets": cells}}, n_resamples=10, seed=0)
    assert list(out["recency"]["budgets"]) == ["64w", "128w", "256w"]
