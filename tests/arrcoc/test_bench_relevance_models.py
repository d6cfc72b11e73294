"""Unit tests of the relevance benchmark's learned parts: LMs, world-model methods, dev tools, caches."""

from __future__ import annotations

import numpy as np
import pytest

from benches.relevance.cache import cached_array, cached_json
from benches.relevance.data import Instance, Turn, make_instance
from benches.relevance.lm import cache_nll, fit_cache_weight
from benches.relevance.scorers import baseline_scorers
from benches.relevance.synthetic import task_dialogues


def T(role: str, text: str) -> Turn:
    return Turn(role, tuple(text.split()))


# ---- caches, scorers and dev tools ----
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
