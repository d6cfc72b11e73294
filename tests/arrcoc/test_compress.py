import importlib
import json

import pytest
from typer.testing import CliRunner

import arrcoc
from arrcoc.balancing import Balancer, BalancingError, Tensions
from arrcoc.cli import app
from arrcoc.compress import DialogueFileError, compress, read_dialogues
from arrcoc.words import DialogueInputError

DIALOGUE = [
    {"role": "system", "content": "You book trains."},
    {"role": "user", "content": "I need a ticket to Lisbon on May 3 for 2 adults please"},
    {"role": "assistant", "content": "Sure, which departure city?"},
    {"role": "user", "content": "From Porto, morning if possible"},
]
N_WORDS = 3 + 13 + 4 + 5


def test_compress_api_exact_budget_and_structure(length_scorer):
    out = compress(DIALOGUE, budget=0.25, model=length_scorer, force_digits=True)
    assert out.origin_tokens == N_WORDS
    assert sum(k and not f for k, f in zip(out.kept, out.forced, strict=True)) == N_WORDS // 4 == out.budget
    assert out.forced_tokens == 2  # "3" and "2"
    assert [m["role"] for m in out.messages] == [m["role"] for m in DIALOGUE]
    assert out.ratio == pytest.approx((N_WORDS // 4 + 2) / N_WORDS)
    # coupling only, no smoothing, no diversity: the two longest words win
    only_coupling = Balancer(Tensions(1.0, 0.5, 0.0), base_weights=(1.0, 0.0, 0.0))
    sharp = compress(DIALOGUE, budget=2, model=length_scorer, balancer=only_coupling)
    assert [w.text for w, k in zip(sharp.words, sharp.kept, strict=True) if k] == ["departure", "possible"]


def test_compress_api_rejects_bad_messages(length_scorer):
    with pytest.raises(DialogueInputError, match="unknown role 'robot'"):
        compress([{"role": "robot", "content": "hi"}], budget=0.5, model=length_scorer)
    with pytest.raises(DialogueInputError, match="'content' must be a string"):
        compress([{"role": "user", "content": 5}], budget=0.5, model=length_scorer)
    assert arrcoc.compress is compress


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_compress_contract_and_bad_lines(tmp_path, patched_model):
    good = json.dumps({"id": "a", "messages": DIALOGUE})
    lines = [
        good,
        "",
        "{not json",
        json.dumps({"id": "b"}),
        json.dumps({"id": "c", "messages": [{"role": "user", "content": ["x"]}]}),
        json.dumps({"id": "d", "messages": [{"role": "wizard", "content": "hi"}]}),
        json.dumps({"id": "e", "messages": [{"role": "user", "content": "word " * 100_000}]}),
        json.dumps({"id": "f", "messages": DIALOGUE[:2]}),
    ]
    src = _write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["compress", str(src), "--budget", "5", "--output", str(out)])
    assert result.exit_code == 1
    err = result.output
    assert "in.jsonl:3: invalid JSON" in err
    assert "in.jsonl:4: missing field 'messages'" in err
    assert "in.jsonl:5: message 0: 'content' must be a string" in err
    assert "in.jsonl:6: message 0: unknown role 'wizard'" in err
    assert "in.jsonl:7: message 0: the dialogue has more than 16384 words" in err
    assert "wrote 2 dialogue(s)" in err and "5 failed" in err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", "f"]
    rec = records[0]
    assert set(rec) >= {"id", "messages", "tokens", "origin_tokens", "compressed_tokens", "ratio"}
    assert rec["origin_tokens"] == len(rec["tokens"]) == N_WORDS
    assert sum(t["kept"] for t in rec["tokens"]) == rec["compressed_tokens"] == 5
    assert rec["ratio"] == pytest.approx(5 / N_WORDS, abs=1e-6)
    assert [m["role"] for m in rec["messages"]] == [m["role"] for m in DIALOGUE]
    assert set(rec["tokens"][0]) >= {"text", "message", "score", "kept"}
    kept_text = " ".join(m["content"] for m in rec["messages"] if m["content"]).split()
    assert kept_text == [t["text"] for t in rec["tokens"] if t["kept"]]


def test_cli_sharegpt_json_and_score(tmp_path, patched_model):
    conv = [
        {
            "id": "s1",
            "conversations": [{"from": "human", "value": "Hello there"}, {"from": "gpt", "value": "Hi!"}],
        },
        {"id": "s2", "conversations": [{"from": "alien", "value": "zzz"}]},
    ]
    text = json.dumps(conv, indent=1)[:-1] + ',\n{"id": "s3", "conversations": [{"from"'  # truncated tail
    src = tmp_path / "share.json"
    src.write_text(text)
    out = tmp_path / "scores.jsonl"
    result = CliRunner().invoke(app, ["score", str(src), "--output", str(out)])
    assert result.exit_code == 1
    assert "unknown speaker 'alien'" in result.output and "truncated JSON" in result.output
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["id"] == "s1" and len(rec["tokens"]) == 3
    assert set(rec["tokens"][0]) == {"text", "message", "score", "coupling", "information", "salience"}
    assert rec["tokens"][0]["coupling"] == 5.0


def test_empty_file_and_bad_budget(tmp_path, patched_model):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DialogueFileError, match="is empty"):
        list(read_dialogues(empty))
    runner = CliRunner()
    result = runner.invoke(app, ["compress", str(empty), "--budget", "0.5", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "is empty" in result.output
    result = runner.invoke(app, ["compress", str(empty), "--budget", "2.5", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "whole number" in result.output


def test_cli_compress_with_a_saved_world_model(tmp_path, tiny_world_model):
    model_dir = tiny_world_model.save_pretrained(tmp_path / "model")
    src = _write_lines(tmp_path / "in.jsonl", [json.dumps({"id": "a", "messages": DIALOGUE})])
    out = tmp_path / "out.jsonl"
    args = ["compress", str(src), "--budget", "0.5", "--model", str(model_dir), "--output", str(out)]
    args += ["--method", "exact", "--force-term", "Lisbon"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    free_kept = sum(t["kept"] and not t["forced"] for t in rec["tokens"])
    assert free_kept == N_WORDS // 2 and rec["forced_tokens"] == 1
    assert next(t for t in rec["tokens"] if t["text"] == "Lisbon")["kept"]


def test_dialogue_without_words_keeps_roles(length_scorer):
    out = compress(
        [{"role": "user", "content": "  "}, {"role": "assistant", "content": ""}], 0.5, length_scorer
    )
    assert out.messages == [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
    assert (out.origin_tokens, out.compressed_tokens, out.ratio) == (0, 0, 1.0)


def test_balancer_for_keeps_peaks_only_for_the_listed_methods(monkeypatch, patched_model):
    ac = importlib.import_module("arrcoc.compress")  # the module (the package exports a function of its name)

    monkeypatch.setattr(ac, "KEEP_PEAKS", frozenset({"hybrid"}))
    assert ac.balancer_for("hybrid").keep_peaks and not ac.balancer_for("fast").keep_peaks
    assert ac.balancer_for("hybrid").tensions == ac.tensions_for("hybrid")
    monkeypatch.setattr(ac, "KEEP_PEAKS", frozenset())
    flat = compress(DIALOGUE, budget=1.0, model=patched_model, method="hybrid").balanced
    monkeypatch.setattr(ac, "KEEP_PEAKS", frozenset({"hybrid"}))
    peaked = compress(DIALOGUE, budget=1.0, model=patched_model, method="hybrid").balanced
    assert flat != peaked  # compress() builds its balancer through balancer_for


def test_reserved_share_serves_the_reserved_ranking_in_every_budget(monkeypatch, patched_model):
    ac = importlib.import_module("arrcoc.compress")

    monkeypatch.setattr(ac, "RESERVED_SHARE", {"hybrid": 0.5})
    assert ac.balancer_for("hybrid").reserved_share == 0.5 and ac.balancer_for("fast").reserved_share == 0

    def kept(budget):
        out = compress(DIALOGUE, budget=budget, model=patched_model, method="hybrid")
        return {w.text for w, k in zip(out.words, out.kept, strict=True) if k}

    shared = kept(4)
    monkeypatch.setattr(ac, "RESERVED_SHARE", {})
    # of a budget of 4: the reserved score's best 2 (minus length: the shortest words, ties earlier)
    # and the balanced score's best 2
    assert shared == {"I", "a"} | kept(2) and not {"I", "a"} & kept(4)
    scores = patched_model.score(DIALOGUE, "hybrid")
    scores.reserved = scores.reserved[:-1]
    with pytest.raises(BalancingError, match="24 values for 25 words"):
        ac.realize(DIALOGUE, scores, ac.balancer_for("hybrid"), None)


def _hybrid_cli_kept(tmp_path, *options: str) -> list[str]:
    """Words `arrcoc compress --method hybrid --budget 4` keeps of DIALOGUE, in order."""
    src = _write_lines(tmp_path / "in.jsonl", [json.dumps({"id": "a", "messages": DIALOGUE})])
    out = tmp_path / "out.jsonl"
    args = ["compress", str(src), "--output", str(out), "--method", "hybrid", "--budget", "4", *options]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return [t["text"] for t in json.loads(out.read_text())["tokens"] if t["kept"]]


def test_cli_reserved_share_option(tmp_path, patched_model):
    src = _write_lines(tmp_path / "in.jsonl", [json.dumps({"id": "a", "messages": DIALOGUE})])

    def kept(*share):
        return set(_hybrid_cli_kept(tmp_path, *share))

    assert {"I", "a"} <= kept("--reserved-share", "0.5")  # the reserved score (minus length) served
    assert not {"I", "a"} & kept("--reserved-share", "0")
    assert kept() == kept("--reserved-share", "0.4")  # the default: hybrid's tuned share
    bad = CliRunner().invoke(app, ["score", str(src), "-o", str(tmp_path / "o"), "--reserved-share", "1.5"])
    assert bad.exit_code == 2 and "reserved_share must be in [0, 1]" in bad.output, bad.output


def test_recent_share_keeps_the_last_words_in_python_and_cli(tmp_path, monkeypatch, patched_model):
    ac = importlib.import_module("arrcoc.compress")

    monkeypatch.setattr(ac, "RECENT_SHARE", {"hybrid": 0.5})
    assert ac.balancer_for("hybrid").recent_share == 0.5 and ac.balancer_for("fast").recent_share == 0
    assert ac.balancer_for("hybrid", recent_share=0.2).recent_share == 0.2
    src = _write_lines(tmp_path / "in.jsonl", [json.dumps({"id": "a", "messages": DIALOGUE})])

    def kept(*options):
        return _hybrid_cli_kept(tmp_path, *options)

    # no reserved share: 2 of the 4 words are the dialogue's last 2, 2 the balanced score's best
    recent = kept("--reserved-share", "0", "--recent-share", "0.5")
    assert {"if", "possible"} <= set(recent) and len(recent) == 4
    # the defaults (reserved 0.4, recent patched to 0.5): the reuse ranking's 2 (minus length: "I", "a")
    # and the last 2 words
    assert kept() == kept("--recent-share", "0.5") == ["I", "a", "if", "possible"]
    record = json.loads((tmp_path / "out.jsonl").read_text())
    assert record["shares"] == {"reserved": 0.4, "recent": 0.5}  # outputs say how they were made
    fast = compress(DIALOGUE, budget=4, model=patched_model, method="fast")
    assert fast.shares == {"reserved": 0.0, "recent": 0.0}  # no reserved score: no reserved share
    bad = CliRunner().invoke(
        app, ["score", str(src), "-o", str(tmp_path / "o"), "--method", "hybrid", "--recent-share", "0.8"]
    )
    assert bad.exit_code == 2 and "reserved_share + recent_share must be <= 1" in bad.output, bad.output


def test_method_tensions_and_the_cli_tension_option(tmp_path, patched_model):
    from arrcoc.compress import METHOD_TENSIONS, tensions_for

    assert tensions_for("fast") == Tensions() and tensions_for("hybrid") == METHOD_TENSIONS["hybrid"]
    assert tensions_for("hybrid", Tensions(0.4, 0.5, 0.3)) == Tensions(0.4, 0.5, 0.3)  # explicit wins
    tuned = compress(DIALOGUE, budget=0.25, model=patched_model, method="hybrid")
    assert tuned.tensions["compress_particularize"] == METHOD_TENSIONS["hybrid"].compress_particularize
    assert compress(DIALOGUE, budget=0.25, model=patched_model).tensions["compress_particularize"] == 0.7
    src = _write_lines(tmp_path / "in.jsonl", [json.dumps({"id": "a", "messages": DIALOGUE})])
    out = tmp_path / "out.jsonl"
    args = ["score", str(src), "--output", str(out), "--method", "hybrid"]
    result = CliRunner().invoke(app, [*args, "--tension", "focus_diversify=0.5"])
    assert result.exit_code == 0, result.output
    tensions = json.loads(out.read_text())["tensions"]
    assert tensions["focus_diversify"] == 0.5  # named: overridden; unnamed: the method's tuned value
    assert tensions["compress_particularize"] == METHOD_TENSIONS["hybrid"].compress_particularize
    for bad, message in [
        ("speed=1", "NAME one of compress_particularize"),
        ("focus_diversify=high", "is not a number"),
        ("focus_diversify=2", "must be in [0, 1]"),
    ]:
        result = CliRunner().invoke(app, [*args, "--tension", bad])
        assert result.exit_code == 2 and message in result.output, result.output
