"""Unit tests of the relevance benchmark: statistics, BM25, budgets, data, J4 generator, judges."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from benches.relevance import stats
from benches.relevance.budget import BudgetError, budget_for, budget_words, compress, select_top
from benches.relevance.data import Instance, Turn, bench_split, group_conversations, make_instance
from benches.relevance.judge_check import retention_vs_recency
from benches.relevance.judges import auprc, j4_metrics, retention, silver_labels
from benches.relevance.retrieval import RetrievalJudge, _rank_metrics, build_candidate_sets, length_bucket
from benches.relevance.scorers import OracleScorer, RecencyScorer, TfIdfScorer
from benches.relevance.synthetic import KINDS, POOLS, task_dialogues


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
