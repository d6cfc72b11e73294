"""Unit tests of the relevance benchmark: statistics, BM25, budgets, data, J4 generator, judges, caches."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from benches.relevance import stats
from benches.relevance.budget import BudgetError, budget_for, budget_words, compress, select_top
from benches.relevance.cache import cached_array, cached_json
from benches.relevance.data import Instance, Turn, bench_split, group_conversations, make_instance
from benches.relevance.judge_check import retention_vs_recency
from benches.relevance.judges import auprc, j4_metrics, retention, silver_labels
from benches.relevance.lm import cache_nll, fit_cache_weight
from benches.relevance.report import write_section
from benches.relevance.retrieval import RetrievalJudge, _rank_metrics, build_candidate_sets, length_bucket
from benches.relevance.scorers import OracleScorer, RecencyScorer, TfIdfScorer, baseline_scorers
from benches.relevance.seeds import merge_seeds, seed_summary
from benches.relevance.synthetic import KINDS, POOLS, task_dialogues
from benches.relevance.verdict import edge_note, narrowest, targets_met, verdict, verdict_lines


def T(role: str, text: str) -> Turn:
    return Turn(role, tuple(text.split()))


# ---- statistics ----
def test_holm_matches_hand_computed_values():
    # sorted p: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> monotone .06
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_mcnemar_exact_binomial_hand_value():
    a = np.array([1] * 8 + [0] * 2 + [1] * 5, bool)  # 8 only-a, 2 only-b, 5 both
    b = np.array([0] * 8 + [1] * 2 + [1] * 5, bool)
    assert stats.mcnemar(a, b) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert stats.mcnemar(a, a) == 1.0


def test_wilcoxon_matches_scipy_and_exact_value():
    a, b = np.array([2.0, 3.0, 5.0, 8.0, 10.0]), np.zeros(5)
    assert stats.wilcoxon_p(a, b) == pytest.approx(2 / 32)  # all 5 ranks positive, exact two-sided
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=40), rng.normal(0.3, size=40)
    assert stats.wilcoxon_p(x, y) == pytest.approx(wilcoxon(x - y).pvalue)
    assert stats.wilcoxon_p(x, x) == 1.0


def test_paired_p_picks_mcnemar_for_binary_outcomes():
    a, b = np.array([1.0, 1, 1, 0]), np.array([0.0, 0, 0, 0])
    assert stats.paired_p(a, b) == stats.mcnemar(a, b)
    assert stats.paired_p(a + 0.5, b) == stats.wilcoxon_p(a + 0.5, b)


def test_bootstrap_ci_reference_and_coverage():
    x = np.array([0.0, 1.0] * 50)
    mean, lo, hi = stats.mean_ci(x, n_resamples=4000, seed=1)
    idx = stats.bootstrap_indices(100, 4000, 1)
    ref = np.quantile(x[idx].mean(axis=1), [0.025, 0.975])
    assert mean == 0.5 and (lo, hi) == pytest.approx(tuple(ref))
    assert hi - lo == pytest.approx(2 * 1.96 * 0.05, abs=0.03)  # normal approximation of the SE
    assert stats.mean_ci(np.full(30, 2.5), n_resamples=100) == (2.5, 2.5, 2.5)
    assert stats.diff_ci(x, x, n_resamples=100) == (0.0, 0.0, 0.0)


def test_bootstrap_ratio_statistic_is_paired():
    cols = np.stack([np.arange(1.0, 11.0), 2 * np.arange(1.0, 11.0)])
    point, lo, hi = stats.bootstrap_ci(cols, lambda m: m[1] / m[0], n_resamples=500)
    assert point == lo == hi == pytest.approx(2.0)  # pairs resampled together keep the ratio exactly


# ---- retrieval ----
def test_rank_metrics_hand_values_and_ties_count_against():
    assert _rank_metrics(np.array([0.9, 0.1, 0.5, 0.95]), 2) == (1.0, 0.0, 0.5)
    assert _rank_metrics(np.array([0.5, 0.5, 0.1]), 2) == (0.0, 0.0, 0.5)
    assert length_bucket(1) == 0 and length_bucket(8) == 3 and length_bucket(15) == 3


def _toy_instances(n: int = 6) -> list[Instance]:
    out = []
    for i in range(n):
        ctx = (T("user", f"hello topic{i} please help"), T("assistant", f"sure about topic{i} here"))
        tgt = (
            T("user", f"more on topic{i} and unique{i} words"),
            T("assistant", "ok"),
            T("user", f"bye now {i}"),
        )
        out.append(Instance(f"r{i}", ctx, tgt))
    return out


def test_bm25_score_matches_hand_formula():
    insts = _toy_instances(3)
    sets = build_candidate_sets(insts, seed=0, n_negatives=5)
    judge = RetrievalJudge(sets, np.eye(len(sets.texts), dtype=np.float32))
    bm25 = judge.bm25
    doc = sets.positive[0]
    tokens = ["unique0"]
    n_docs, df = len(sets.texts), 1
    idf = math.log((n_docs - df + 0.5) / (df + 0.5))
    dl = len(bm25.doc_freqs[doc]) and sum(bm25.doc_freqs[doc].values())
    expected = idf * (1 * 2.5) / (1 + 1.5 * (1 - 0.75 + 0.75 * dl / bm25.avgdl))
    assert bm25.get_batch_scores(tokens, [doc])[0] == pytest.approx(expected)


def test_candidate_sets_exclude_own_conversation_and_retrieve_by_bm25():
    insts = _toy_instances(6)
    sets = build_candidate_sets(insts, seed=3, n_negatives=4)
    assert sets == build_candidate_sets(insts, seed=3, n_negatives=4)  # drawn deterministically
    for i in range(len(insts)):
        assert sets.positive[i] not in sets.negatives[i]
        assert all(f"topic{i} " not in sets.texts[c] + " " for c in sets.negatives[i])
    emb = np.random.default_rng(0).normal(size=(len(sets.texts), 8)).astype(np.float32)
    judge = RetrievalJudge(sets, emb)
    q = emb[sets.positive[2]]
    [m] = judge.evaluate(2, q[None], ["unique2 topic2"], q)
    assert m["j1_r1_10"] == 1.0 and m["j1b_r1_10"] == 1.0 and m["j3_fidelity"] == pytest.approx(1.0)
    [m] = judge.evaluate(2, q[None], [""], q)
    assert m["j1b_r1_10"] == 0.0  # an empty query ties everything: no hit


def test_hard_set_comes_from_later_user_turns_never_from_the_context():
    ctx = (T("user", "book a table tonight please"), T("assistant", "for how many people then"))
    tgt = (
        T("user", "for four people at eight"),
        T("assistant", "done, table for four"),
        T("user", "can we move it to nine"),
        T("assistant", "moved to nine"),
    )
    later = (T("user", "also add a high chair"), T("assistant", "added"), T("user", "ok"))
    with_later = Instance("h", ctx, tgt, later=later)
    none_after = Instance("n", ctx, tgt[:2])  # no user turn after t
    sets = build_candidate_sets([with_later, none_after, *_toy_instances(3)], seed=0, n_negatives=3)
    hard = {sets.texts[c] for c in sets.hard[0]}
    # the later user turns with >= 3 words; no context turn, no assistant turn, not turn t itself
    assert hard == {"can we move it to nine", "also add a high chair"}
    assert sets.hard[1] == [] and sets.to_json()["hard_source"] == "future"
    emb = np.random.default_rng(0).normal(size=(len(sets.texts), 8)).astype(np.float32)
    judge = RetrievalJudge(sets, emb)
    q = emb[sets.positive[0]]
    assert judge.evaluate(0, q[None], ["x"], q)[0]["j1_hard_r1"] == 1.0
    assert math.isnan(judge.evaluate(1, q[None], ["x"], q)[0]["j1_hard_r1"])  # no hard set: no score


# ---- budgets ----
def test_budgets_are_floor_of_ratio_and_capped_words():
    assert budget_words(10, ratio=0.25) == 2 and budget_words(29, ratio=0.1) == 2
    assert budget_words(100, ratio=0.29) == 29 and budget_words(7, ratio=0.5) == 3
    assert budget_words(50, words=64) == 50 and budget_for("128w", 300) == 128 and budget_for("1", 9) == 9
    for bad in (dict(ratio=1.5), dict(words=-1), dict()):
        with pytest.raises(BudgetError):
            budget_words(10, **bad)


def test_select_top_is_exact_ordered_and_breaks_ties_toward_recent():
    scores = np.array([1.0, 3.0, 3.0, 0.0, 2.0])
    assert select_top(scores, 2).tolist() == [False, True, True, False, False]
    assert select_top(np.zeros(4), 1).tolist() == [False, False, False, True]
    rng = np.random.default_rng(0)
    for n in (1, 7, 50):
        for b in range(n + 1):
            assert select_top(rng.random(n), b).sum() == b
    with pytest.raises(BudgetError):
        select_top(np.array([np.nan, 1.0]), 1)


def test_compress_keeps_speaker_tags_and_order():
    inst = Instance("x", (T("user", "a b c"), T("assistant", "d e")), (T("user", "f g h"),))
    turns = compress(inst, np.array([0, 1, 0, 0, 1], bool))
    assert [(t.role, t.words) for t in turns] == [("user", ("b",)), ("assistant", ("e",))]


# ---- data ----
def _rec(rid: str, *texts: str, first: str = "human") -> dict:
    roles = ["human", "gpt"] if first == "human" else ["gpt", "human"]
    return {"id": rid, "conversations": [{"from": roles[i % 2], "value": t} for i, t in enumerate(texts)]}


def test_group_filter_dedup():
    records = [
        _rec("a_0", "q1 here", "r1"),
        _rec("a_1", "q2 x y", "r2"),
        _rec("b", "short", "r"),
        _rec("c", "x", "y", "z", "w", first="gpt"),
        _rec("d", "Q1, here!", "r", "s", "t"),
        {"id": "e", "conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "h"}]},
    ]
    convs = group_conversations(records)
    assert [c.root_id for c in convs] == [
        "a"
    ]  # b too short, c starts with gpt, d duplicate of a, e has system
    assert [t.text for t in convs[0].turns] == ["q1 here", "r1", "q2 x y", "r2"]


def test_splits_are_hash_based_and_cut_is_seeded():
    splits = {bench_split(f"root{i}") for i in range(200)}
    assert splits == {"train_a", "train_b", "dev", "test"}
    assert bench_split("abc") == bench_split("abc")
    from benches.relevance.data import Conversation

    conv = Conversation(
        "z",
        (
            T("user", "a b c"),
            T("assistant", "x y z"),
            T("user", "continue"),
            T("assistant", "p q r"),
            T("user", "one two three four"),
            T("assistant", "ok"),
        ),
    )
    inst = make_instance(conv, seed=0, count_pieces=lambda text: 200)
    assert inst.targets[0].text == "one two three four"  # "continue" (< 3 words) is never a target
    assert len(inst.context) == 4 and inst.track == "primary"
    assert make_instance(conv, 0, lambda text: 50) is None  # no track below 128 pieces
    assert make_instance(conv, 0, lambda text: 600).track == "long"
    assert inst.later == ()  # nothing after t+3
    words = ["a b c", "x", "one two three", "y", "go", "z", "ok", "w"]
    longer = Conversation(
        "l", tuple(T("user" if k % 2 == 0 else "assistant", w) for k, w in enumerate(words))
    )
    cut = make_instance(longer, seed=0, count_pieces=lambda text: 200)  # the only cut: t = 2
    assert [t.text for t in cut.targets] == ["one two three", "y", "go", "z"]
    assert [t.text for t in cut.later] == ["ok", "w"]  # kept for J1's hard set


# ---- scorers ----
def test_oracle_tfidf_recency_hand_values():
    inst = Instance(
        "o", (T("user", "the Paris trip"), T("assistant", "book trip")), (T("user", "Paris, again"),)
    )
    assert OracleScorer().score(inst).tolist() == [0.0, 2.0, 0.0, 0.0, 0.0]
    tfidf = TfIdfScorer([["trip"], ["trip", "paris"], ["book"]])
    idf_trip, unseen = math.log(4 / 3) + 1, math.log(4) + 1
    assert tfidf.score(inst)[2] == pytest.approx(2 * idf_trip)  # "trip" appears twice in the context
    assert tfidf.score(inst)[0] == pytest.approx(unseen)
    assert RecencyScorer().score(inst).tolist() == [0, 1, 2, 3, 4]


# ---- J4 ----
def test_j4_templates_and_filler_disjoint_between_train_dev_and_test():
    for a, b in itertools.combinations(POOLS, 2):
        for field in POOLS[a].__dataclass_fields__:
            assert not set(getattr(POOLS[a], field)) & set(getattr(POOLS[b], field)), (a, b, field)
        sentences_a = {t.text for i in task_dialogues(30, a, 0) for t in i.context}
        sentences_b = {t.text for i in task_dialogues(30, b, 0) for t in i.context}
        shared = sentences_a & sentences_b
        assert shared <= {"Of course, please share the details.", "I think that covers everything for now."}


def test_j4_overrides_gold_and_decoys():
    dialogues = task_dialogues(300, "test", 1)
    overrides = sum(
        t.text.startswith(("Sorry, scratch that", "New plan: make")) for i in dialogues for t in i.context
    )
    assert overrides / (3 * len(dialogues)) == pytest.approx(0.3, abs=0.05)
    for inst in dialogues[:50]:
        words = inst.flat_words()
        confirm = {w.rstrip(".;,") for w in inst.targets[1].words}
        assert len(inst.needed) == 2 and len(inst.decoy) == 2 and not set(inst.needed) & set(inst.decoy)
        assert all(words[i].rstrip(".;,") in confirm for i in inst.needed)  # gold = the latest value
        assert not any(words[i].rstrip(".;,") in confirm for i in inst.decoy)


def test_j4_asking_turn_does_not_leak_the_needed_kinds():
    kinds = {k for name in KINDS.values() for k in name.split()}
    for split in POOLS:
        for inst in task_dialogues(40, split, 2):
            assert not {w.strip(".,?") for w in inst.context[-1].words} & kinds
            assert {w.strip(".,?") for w in inst.targets[0].words} & kinds  # the future names them
        named = task_dialogues(40, split, 2, ask_names_kinds=True)
        assert all({w.strip(".,?") for w in i.context[-1].words} & kinds for i in named)


# ---- judges ----
def test_judge_metrics_hand_values():
    assert auprc(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx((1 + 2 / 3) / 2)
    assert math.isnan(auprc(np.zeros(3), np.ones(3)))
    assert retention(np.array([3.0]), np.array([4.0]), np.array([2.0])) == pytest.approx(0.5)
    inst = Instance("j", (T("user", "a b c d"),), (T("user", "x"),), needed=(1, 3), decoy=(0,))
    assert j4_metrics(inst, np.array([0.0, 5, 1, 0]), 2) == {"j4_recall": 0.5, "j4_decoy": 0.0}
    silver = Instance(
        "s",
        (T("user", "the Lisbon flight"),),
        (T("user", "lisbon?"), T("user", "x"), T("user", "y"), T("user", "flight")),
    )
    assert silver_labels(silver).tolist() == [False, True, True]  # t..t+3, stop words excluded


def test_judge_check_retention_and_difference_to_recency_by_hand():
    # two conversations; J2 column 0, J2c column 1 (J2c: empty 6, full 4, recency 5, x 4.5 / 4.5)
    nll = {
        "empty": np.array([[5.0, 6.0], [5.0, 6.0]]),
        "full": np.array([[4.0, 4.0], [4.0, 4.0]]),
        "recency": np.array([[4.5, 5.0], [4.5, 5.0]]),
        "x": np.array([[4.0, 4.5], [4.4, 4.5]]),
    }
    j2 = retention_vs_recency(nll, "x", 0, n_resamples=200)
    assert j2["retention"] == pytest.approx((5.0 - 4.2) / 1.0)  # retention of the mean NLL
    assert j2["vs_recency"]["mean"] == pytest.approx(0.8 - 0.5)
    assert 0.3 <= j2["vs_recency"]["hi"] and j2["vs_recency"]["lo"] <= 0.3
    j2c = retention_vs_recency(nll, "x", 1, n_resamples=200)
    assert j2c["retention"] == pytest.approx(0.75)
    assert j2c["vs_recency"]["lo"] == pytest.approx(0.25) == j2c["vs_recency"]["hi"]  # no spread


# ---- report and cache ----
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


def test_learned_baselines_get_one_scorer_per_lm_seed():
    names = [
        sc.name for sc in baseline_scorers(None, "lm0", [["a"]], random_seeds=2, lm_seeds=["lm1", "lm2"])
    ]
    assert names[:2] == ["random0", "random1"] and "selfinfo" in names and "contrast" in names
    assert names[-4:] == ["selfinfo_seed1", "contrast_seed1", "selfinfo_seed2", "contrast_seed2"]


def test_dev_tuning_rule_sums_the_margins_of_settings_ahead_on_both_judges():
    from benches.relevance.dev_tuning import choose, margins

    baselines = {
        "selfinfo": {"j4_recall": 0.80, "j2_retention": 0.45},
        "contrast": {"j4_recall": 0.30, "j2_retention": 0.85},
    }
    metrics = {
        (0.75, 0.2, 0.0): {"j4_recall": 0.62, "j2_retention": 1.30},  # J2 far ahead, loses J4
        (0.5, 0.3, 0.0): {"j4_recall": 0.93, "j2_retention": 0.97},  # +0.13 / +0.12: sum 0.25
        (0.75, 0.7, 0.2): {"j4_recall": 0.96, "j2_retention": 0.88},  # +0.16 / +0.03: sum 0.19
    }
    margin = margins(metrics, baselines)
    assert margin[(0.75, 0.2, 0.0)] == pytest.approx((0.62 - 0.80, 1.30 - 0.85))
    assert margin[(0.5, 0.3, 0.0)] == pytest.approx((0.93 - 0.80, 0.97 - 0.85))
    # ahead on both: the larger sum wins; the J4 loser is out however large its J2 margin
    assert choose(margin, shipped=(0.75, 0.7, 0.2)) == (0.5, 0.3, 0.0)
    # the new rule and the old one (largest smaller margin) disagree: the larger sum wins
    both = {(0.5, 0.3, 0.0): (0.05, 0.40), (0.75, 0.7, 0.2): (0.10, 0.12)}
    assert choose(both, shipped=(0.75, 0.7, 0.2)) == (0.5, 0.3, 0.0)
    # "ahead" is judged to 6 decimals like the ranking: a J2 margin of 1e-9 is not ahead
    noise = {(0.5, 0.3, 0.0): (0.30, 1e-9), (0.75, 0.7, 0.2): (0.01, 0.02)}
    assert choose(noise, shipped=(0.5, 0.3, 0.0)) == (0.75, 0.7, 0.2)
    # nobody ahead on both: the largest smaller margin
    behind = {(0.5, 0.3, 0.0): (-0.05, 0.4), (0.75, 0.7, 0.2): (-0.01, 0.02), (1.0, 0.0, 0.0): (0.3, -0.2)}
    assert choose(behind, shipped=(0.5, 0.3, 0.0)) == (0.75, 0.7, 0.2)
    tie = dict.fromkeys([(0.5, 0.2, 0.0), (0.25, 0.2, 0.0), (0.75, 0.2, 0.0)], (0.05, 0.05))
    assert choose(tie, shipped=(0.75, 0.2, 0.0)) == (0.75, 0.2, 0.0)  # ties: the shipped setting
    assert choose(tie, shipped=(1.0, 0.0, 0.0)) == (0.25, 0.2, 0.0)  # then the smaller w


def test_dev_tuning_grid_adds_recent_shares_at_fixed_tensions():
    from benches.relevance.dev_tuning import RECENT_AT, RECENT_GRID, RECENT_SHARES, settings_grid

    grid = settings_grid()
    with_recent = [g for g in grid if g[5] > 0]
    assert all(g[:4] == RECENT_AT and g[4] + g[5] <= 1.0 + 1e-9 for g in with_recent)
    assert {g[4] for g in with_recent} == set(RECENT_SHARES) and {g[5] for g in with_recent} == set(
        RECENT_GRID
    )
    assert len(with_recent) == 19  # 4 reserved x 5 recent shares, less 0.6 + 0.5 > 1
    assert (0.75, 0.3, 0.0, False, 0.4, 0.2) in grid and (0.5, 0.0, 0.0, True, 0.2, 0.0) in grid


def test_write_section_replaces_only_between_markers(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("# Benchmarks\n\n## Control\nkeep me\n")
    write_section(doc, "<!-- relevance:start -->\nv1\n<!-- relevance:end -->")
    write_section(doc, "<!-- relevance:start -->\nv2\n<!-- relevance:end -->")
    text = doc.read_text()
    assert "keep me" in text and "v2" in text and "v1" not in text and text.count("relevance:start") == 1


def test_truncated_cache_files_are_rebuilt(tmp_path):
    path = tmp_path / "x.json"
    assert cached_json(path, lambda: {"a": 1}) == {"a": 1}
    path.write_text('{"a": ')  # truncated
    assert cached_json(path, lambda: {"a": 2}) == {"a": 2}
    assert cached_json(path, lambda: {"a": 3}) == {"a": 2}  # complete file: reused
    arr = tmp_path / "x.npy"
    cached_array(arr, lambda: np.ones((3, 2)))
    arr.write_bytes(arr.read_bytes()[:40])
    np.testing.assert_array_equal(cached_array(arr, lambda: np.zeros((3, 2)), rows=3), np.zeros((3, 2)))
    np.testing.assert_array_equal(cached_array(arr, lambda: np.ones((4, 2)), rows=4), np.ones((4, 2)))


def test_world_model_adapter_scores_every_context_word(length_scorer):
    from benches.relevance.wm_methods import WorldModelMethod

    inst = Instance(
        "w", (T("user", "book Lisbon flight"), T("assistant", "which date")), (T("user", "x y z"),)
    )
    scores = WorldModelMethod(length_scorer, "fast").score(inst)
    assert scores.shape == (5,) and np.isfinite(scores).all()


def test_cached_world_model_results_are_tied_to_the_weights():
    import torch

    from benches.relevance.runner import Benchmark
    from benches.relevance.wm_methods import WorldModelMethod, model_fingerprint

    net = torch.nn.Linear(3, 2)
    old = model_fingerprint(net)
    assert old == model_fingerprint(net) and len(old) == 16
    with torch.no_grad():
        net.weight[0, 0] += 1.0
    new = model_fingerprint(net)
    assert new != old
    insts = [Instance("w", (T("user", "a b"),), (T("user", "c"),))]
    valid = Benchmark._same_roots(insts, WorldModelMethod(net, "fast", fingerprint=new))
    assert valid({"root_ids": ["w"], "fingerprint": new})
    assert not valid({"root_ids": ["w"], "fingerprint": old})  # another world model's results
    assert not valid({"root_ids": ["w"]})  # cached before fingerprints existed
    assert not valid({"root_ids": ["v"], "fingerprint": new})
    assert Benchmark._same_roots(insts)({"root_ids": ["w"]})  # baselines: conversations only


def test_world_model_method_names_are_checked_before_any_scoring(tiny_world_model, tmp_path):
    from benches.relevance.wm_methods import ReuseMethod, WorldModelMethod, world_model_scorers

    tiny_world_model.save_pretrained(tmp_path / "m")
    made = world_model_scorers(str(tmp_path / "m"), ("fast", "reuse_seed2", "hybrid"), tracks=("primary",))
    assert [type(m) for m in made] == [WorldModelMethod, ReuseMethod, ReuseMethod]
    assert [(m.name, m.method, getattr(m, "seed", None)) for m in made] == [
        ("wm_fast", "fast", None),
        ("wm_reuse_seed2", "reuse", 2),
        ("wm_hybrid", "hybrid", 0),
    ]
    assert made[1].tracks == ("primary", "long") and made[2].tracks == ("primary",)  # reuse: every track
    for bad in ("reuse1", "hybrid_seedx", "fast_seed1", "slow"):
        with pytest.raises(ValueError, match="unknown world-model method"):
            world_model_scorers(str(tmp_path / "m"), (bad,))


def test_small_lm_word_alignment_save_load_and_judge(tmp_path):
    import torch

    from benches.relevance.lm import LMConfig, SmallLM
    from worldmodel.checkpoint import CheckpointError

    texts = ["User: book a table for two\nAssistant: which day works for you"] * 20
    config = LMConfig(vocab_size=300, n_layer=1, n_embd=16, n_head=2, n_positions=32, steps=2, batch_size=2)
    lm = SmallLM.train(texts, config)
    turns = (T("user", "book a table"), T("assistant", "which day"))
    ids, owner = lm.turns_ids(turns)
    assert owner.max() == 4 and (owner == -1).sum() > 0  # 5 words; tags are owned by no word
    nll = lm.word_nll(turns)
    tokens = lm.token_nll(ids)
    assert nll.shape == (5,) and nll.sum() == pytest.approx(tokens[owner >= 0].sum())
    long_ids = ids * 6  # longer than n_positions: strided windows
    assert lm.token_nll(long_ids).shape == (len(long_ids),) and np.isfinite(lm.token_nll(long_ids)).all()
    target = (T("user", "two please"), T("assistant", "done"))
    out = lm.target_nll([turns, (), turns * 5], target, cache_weights=(0.0, 0.3))
    assert out.shape == (3, 2, 2) and np.isfinite(out).all()
    # The cache changes nothing without a history (empty context, first target token) ...
    ids_t = lm.turns_ids(target)[0]
    plain = lm.token_nll(ids_t)  # the same tokens after EOS alone: the empty context
    assert out[1, 0, 1] == pytest.approx(plain.mean(), rel=1e-4)
    assert out[1, 1, 1] == pytest.approx(cache_nll(np.exp(-plain), [], ids_t, 0.3).mean(), rel=1e-4)
    fit = fit_cache_weight(lm, texts[:20], n=5)
    assert fit["weight"] in fit["grid"] and fit["n"] == 5
    assert fit["nll"][fit["grid"].index(fit["weight"])] == min(fit["nll"])
    lm.save(tmp_path / "lm.safetensors")
    again = SmallLM.load(tmp_path / "lm.safetensors")
    with torch.no_grad():
        np.testing.assert_allclose(again.word_nll(turns), nll, rtol=1e-5)
    (tmp_path / "lm.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError):
        SmallLM.load(tmp_path / "lm.safetensors")


def test_cache_nll_hand_values():
    p_model = np.array([0.5, 0.1, 0.2])
    # history [7, 7, 9]: p(7) = 2/3, then history [7, 7, 9, 7]: p(8) = 0, then p(7) = 3/5
    out = cache_nll(p_model, [7, 7, 9], [7, 8, 7], 0.25)
    expected = [0.75 * 0.5 + 0.25 * 2 / 3, 0.75 * 0.1, 0.75 * 0.2 + 0.25 * 3 / 5]
    np.testing.assert_allclose(out, -np.log(expected))
    np.testing.assert_allclose(cache_nll(p_model, [7], [7, 8, 7], 0.0), -np.log(p_model))
    # no history at all: the first token falls back to the LM, later ones use the target read so far
    assert cache_nll(p_model, [], [7, 7], 0.5)[1] == pytest.approx(-np.log(0.5 * 0.1 + 0.5 * 1.0))


def test_compression_aware_judge_samples_match_the_judged_layout():
    from benches.relevance.lm import LMConfig, SmallLM, _parse_rendered

    text = "User: book a table for two\nAssistant: which day works for you\nUser: friday at eight please"
    turns = _parse_rendered(text)
    assert turns == [
        T("user", "book a table for two"),
        T("assistant", "which day works for you"),
        T("user", "friday at eight please"),
    ]
    config = LMConfig(
        vocab_size=300, n_layer=1, n_embd=16, n_head=2, n_positions=64, steps=3, batch_size=2, compressed=0.5
    )
    lm = SmallLM.train([text] * 20, config)  # mixed batches train without error
    rng = np.random.default_rng(0)
    for _ in range(20):
        ids = lm._compressed_sample([turns], rng, 64)
        assert ids[0] == lm.eos and len(ids) <= 64
        tags = [lm.tokenizer.encode(f"\n{r}:").ids for r in ("User", "Assistant")]
        # the last turns are intact: the sample ends with the tokens of the full final turn(s)
        tail = lm.turns_ids(turns[-1:])[0]
        assert ids[-len(tail) :] == tail and any(ids[1 : 1 + len(t)] == t for t in tags)


# ---- wm_reuse ----
def test_reuse_method_trains_caches_and_scores(tiny_world_model, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from benches.relevance import wm_methods

    j4 = task_dialogues(6, "train", 0)
    monkeypatch.setattr(wm_methods, "_half_a_cuts", lambda bench: [])
    bench = SimpleNamespace(dir=tmp_path, s=SimpleNamespace(seed=0), j4_train=j4)
    first, second = (
        wm_methods.ReuseMethod(tiny_world_model, m, fingerprint="fp") for m in ("reuse", "reuse_seed1")
    )
    assert (first.name, first.method, first.seed) == ("wm_reuse", "reuse", 0)
    assert (second.name, second.method, second.seed) == ("wm_reuse_seed1", "reuse", 1)
    first.fit(bench)
    second.fit(bench)
    heads = sorted(p.name for p in tmp_path.glob("reuse_head-*"))
    base = f"reuse_head-fp-{wm_methods.REUSE_TRAIN}"
    assert heads == [base, f"{base}-seed1"]
    assert first.fingerprint != second.fingerprint  # different heads, different cached results
    again = wm_methods.ReuseMethod(tiny_world_model, "reuse", fingerprint="fp")
    import arrcoc.future_reuse

    monkeypatch.setattr(arrcoc.future_reuse, "fit_reuse", None)  # a cached head is loaded, not retrained
    again.fit(bench)
    assert again.fingerprint == first.fingerprint
    test = task_dialogues(1, "test", 0)[0]
    assert first.score(test).shape == (test.n_words,)


def test_summaries_list_budgets_smallest_first_whatever_the_cache_order():
    from benches.relevance.report import summarise_j4

    cells = {b: {"j4_recall": [0.5, 0.7]} for b in ("256w", "64w", "128w")}  # a sorted-keys cache
    out = summarise_j4({"recency": {"j4_auprc": [0.1, 0.2], "budgets": cells}}, n_resamples=10, seed=0)
    assert list(out["recency"]["budgets"]) == ["64w", "128w", "256w"]


def test_scorer_check_builds_both_lm_baselines_from_a_saved_lm(tmp_path):
    from benches.relevance.data import Conversation
    from benches.relevance.lm import LMConfig, SmallLM
    from benches.relevance.scorer_check import lm_scorers
    from worldmodel.checkpoint import CheckpointError

    texts = ["User: book a table for two\nAssistant: which day works for you"] * 20
    config = LMConfig(vocab_size=300, n_layer=1, n_embd=16, n_head=2, n_positions=32, steps=2, batch_size=2)
    SmallLM.train(texts, config).save(tmp_path / "lm_big.safetensors")
    selfinfo, contrast = lm_scorers(str(tmp_path / "lm_big.safetensors"))
    assert (selfinfo.name, contrast.name) == ("selfinfo_lm_big", "contrast_lm_big")
    turns = ("book a table", "which day", "friday at seven", "done, table for two", "and parking?", "yes")
    dialogue = Conversation(
        "c", tuple(T("user" if k % 2 == 0 else "assistant", w) for k, w in enumerate(turns))
    )
    inst = make_instance(dialogue, seed=0, count_pieces=lambda text: 200)
    assert selfinfo.score(inst).shape == contrast.score(inst).shape == (inst.n_words,)
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        lm_scorers(str(tmp_path / "missing.safetensors"))
