"""Smoke test: ``python -m benches.relevance --quick`` end to end, then a resume from a damaged cache."""

from __future__ import annotations

import json

from benches.relevance.__main__ import main
from worldmodel.run import package_version


def test_quick_benchmark_runs_checks_and_resumes(tmp_path, monkeypatch, length_scorer):
    import benches.relevance.__main__ as entry
    from benches.relevance.wm_methods import WorldModelMethod

    monkeypatch.setenv("ARRCOC_NO_PROGRESS", "1")
    # a stand-in relevance model (conftest) as the world-model method, run on a 3-instance prefix
    stub = [WorldModelMethod(length_scorer, "fast", limit=3, tracks=("primary",), fingerprint="w1")]
    monkeypatch.setattr(entry, "world_model_scorers", lambda *args: stub)
    cache, out, doc = tmp_path / "cache", tmp_path / "r.json", tmp_path / "bench.md"
    argv = [
        "--quick",
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
        "--docs",
        str(doc),
        "--img-dir",
        str(tmp_path / "img"),
        "--world-model",
        "stub",
    ]
    summary = main(argv)
    saved = json.loads(out.read_text())
    assert saved["sizes"]["primary"] == 5 and saved["sizes"]["j4"] == 8
    assert saved["version"] == package_version()
    sanity = saved["sanity"]
    assert sanity["budgets_exact"] and sanity["no_test_root_in_training"] and sanity["j4_templates_disjoint"]
    assert sanity["primary:full_beats_empty:j1_r1_10"] and sanity["primary:full_beats_empty:j3_fidelity"]
    methods = set(saved["tracks"]["primary"])
    assert {"random", "recency", "tfidf", "embedding", "selfinfo", "contrast", "oracle"} <= methods
    cell = saved["tracks"]["primary"]["oracle"]["budgets"]["0.25"]["j1_r1_10"]
    assert cell["lo"] <= cell["mean"] <= cell["hi"]
    assert saved["candidate"] == "wm_fast"
    assert saved["comparisons"] and all(0.0 <= r["p_holm"] <= 1.0 for r in saved["comparisons"])
    assert {r["n"] for r in saved["comparisons"] if r["subset"] == "all"} == {3}  # paired on the prefix
    assert set(saved["verdict_at_0.25"]) == {
        "random",
        "recency",
        "tfidf",
        "embedding",
        "selfinfo",
        "contrast",
    }
    assert "wm_fast (n=3)" in doc.read_text()
    assert "## Relevance" in doc.read_text() and (tmp_path / "img" / "relevance_j4_recall.png").is_file()

    # interrupted run: one method's results lost, another truncated mid-write -> both rebuilt, rest reused
    [evals] = list(cache.glob("quick-*/eval/primary"))
    kept_mtime = (evals / "recency.json").stat().st_mtime_ns
    (evals / "tfidf.json").unlink()
    (evals / "oracle.json").write_text((evals / "oracle.json").read_text()[:50])
    again = main(argv)
    assert (evals / "recency.json").stat().st_mtime_ns == kept_mtime
    assert again["tracks"]["primary"]["tfidf"] == summary["tracks"]["primary"]["tfidf"]
    assert again["tracks"]["primary"]["oracle"] == summary["tracks"]["primary"]["oracle"]
    # the world-model results record the weights they came from; another fingerprint re-evaluates
    assert json.loads((evals / "wm_fast.json").read_text())["fingerprint"] == "w1"
    wm_mtime = (evals / "wm_fast.json").stat().st_mtime_ns
    stub[0].fingerprint = "w2"
    main([*argv, "--only", "wm_fast"])
    assert json.loads((evals / "wm_fast.json").read_text())["fingerprint"] == "w2"
    assert (evals / "wm_fast.json").stat().st_mtime_ns != wm_mtime

    # a replicate with other test cuts: the same models, its own instances and evaluations, no docs
    [model_dir] = list(cache.glob("quick-*"))
    lm_mtime = (model_dir / "lm_a.safetensors").stat().st_mtime_ns
    doc_text = doc.read_text()
    replicate_out = tmp_path / "cut1.json"
    argv_cut = [a for a in argv if a not in ("--docs", str(doc))] + ["--cut-seed", "1"]
    argv_cut[argv_cut.index("--out") + 1] = str(replicate_out)
    main(argv_cut)
    assert (model_dir / "lm_a.safetensors").stat().st_mtime_ns == lm_mtime  # models shared
    assert list(cache.glob("quick-*")) == [model_dir]
    cuts = [json.loads((d / "splits.json").read_text())["test"] for d in (model_dir, model_dir / "cut-1")]
    assert {i["root_id"] for i in cuts[0]} & {i["root_id"] for i in cuts[1]}
    shapes = [[(i["root_id"], len(i["context"])) for i in cut] for cut in cuts]
    assert shapes[0] != shapes[1]  # other cuts
    assert (model_dir / "cut-1" / "eval" / "primary" / "recency.json").is_file()
    replicate = json.loads(replicate_out.read_text())
    assert replicate["settings"]["cut_seed"] == 1 and replicate["sanity"]["budgets_exact"]
    assert doc.read_text() == doc_text


def test_results_file_names_quick_runs_and_cut_replicates():
    from benches.relevance.__main__ import results_name
    from benches.relevance.runner import QUICK, BenchSettings

    assert results_name(BenchSettings()) == "relevance.json"
    assert results_name(QUICK) == "relevance_quick.json"
    assert results_name(BenchSettings(cut_seed=2)) == "relevance_cut2.json"
    assert BenchSettings(cut_seed=2).key == BenchSettings().key  # the models are shared


def test_bad_sizes_and_cut_seeds_are_refused_by_name():
    import pytest

    from benches.relevance.__main__ import parse_args, settings_from

    assert settings_from(parse_args(["--cut-seed", "0"])).cut_seed == 0
    with pytest.raises(SystemExit, match="--cut-seed must be >= 0, got -1"):
        settings_from(parse_args(["--cut-seed", "-1"]))
    with pytest.raises(SystemExit, match="--test-per-track must be >= 1, got 0"):
        settings_from(parse_args(["--test-per-track", "0"]))
