"""Dialogue data: format normalisation, malformed-record accounting, splits, tokenisation."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from dialogue.data import (
    LengthLimitWarning,
    MalformedRecord,
    RoleMap,
    iter_json_array,
    load_dialogues,
    normalise_record,
    root_id,
    split_bucket,
    split_of,
    tokenize_dialogues,
    train_half,
)
from dialogue.data.sources import DataSourceError

EXPECTED = [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "hello"}]


def test_sharegpt_format():
    rec = {
        "id": "a_0",
        "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}],
    }
    out = normalise_record(rec)
    assert out["id"] == "a_0" and out["turns"] == EXPECTED
    assert out["labels"] == {
        "relevance": None,
        "engagement": None,
        "coherence": None,
        "task_success": None,
    }


def test_openai_messages_format_with_text_parts_and_system():
    rec = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "hello"},
        ]
    }
    out = normalise_record(rec, default_id="x")
    assert out["id"] == "x" and out["turns"][0] == {"role": "system", "text": "be brief"}
    assert out["turns"][1:] == EXPECTED


def test_utterance_list_alternates_roles_and_first_role_is_configurable():
    assert normalise_record({"dialog": ["hi", "hello"]})["turns"] == EXPECTED
    assert normalise_record(["hi", "hello"])["turns"] == EXPECTED
    swapped = normalise_record(["hi", "hello"], RoleMap(first_role="assistant"))["turns"]
    assert [t["role"] for t in swapped] == ["assistant", "user"]


def test_custom_role_map_and_labels():
    rec = {
        "turns": [{"speaker": "Customer", "text": "hi"}, {"speaker": "agent", "text": "hello"}],
        "engagement": 0.5,
    }
    out = normalise_record(rec, RoleMap({"customer": "user", "agent": "assistant"}))
    assert out["turns"] == EXPECTED and out["labels"]["engagement"] == 0.5


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"messages": []}, "empty_dialogue"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            "one_role",
        ),
        (
            {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "b"}]},
            "non_string_content",
        ),
        (
            {
                "messages": [
                    {"role": "wizard", "content": "a"},
                    {"role": "assistant", "content": "b"},
                ]
            },
            "unknown_role",
        ),
        ({"text": "no turns here"}, "no_turns"),
        ({"dialog": ["a", "b"], "task_success": 7}, "bad_label"),
        (42, "bad_record"),
    ],
)
def test_malformed_records_raise_with_reason(record, reason):
    with pytest.raises(MalformedRecord) as info:
        normalise_record(record)
    assert info.value.reason == reason and str(info.value)


def test_empty_turns_are_removed_and_counted():
    from dialogue.data import LoadReport

    report = LoadReport()
    out = normalise_record({"dialog": ["hi", "hello", "  ", "ok", ""]}, report=report)
    assert [t["text"] for t in out["turns"]] == ["hi", "hello", "ok"]
    assert report.warnings["empty turns removed"] == 2


def test_load_jsonl_counts_every_skipped_record(tmp_path):
    good = {
        "id": "g1",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
    }
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"id": "b", "messages": [{"role": "user", "content": "x"}]}),
    ]
    lines.append(json.dumps({"id": "c", "messages": [{"role": "alien", "content": "x"}]}))
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ds, report = load_dialogues(str(path))
    assert len(ds) == 1 and ds[0]["turns"] == [
        {"role": "user", "text": "hi"},
        {"role": "assistant", "text": "yo"},
    ]
    assert dict(report.skipped) == {"invalid_json": 1, "one_role": 1, "unknown_role": 1}
    assert "skipped 3 malformed records" in report.summary() and "d.jsonl:2" in report.summary()


def test_truncated_json_array_is_parsed_incrementally(tmp_path):
    recs = [
        {
            "id": f"r{i}",
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
        }
        for i in range(3)
    ]
    text = json.dumps(recs, indent=1)
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) - 30])  # cut inside the last record
    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_text())
    ds, report = load_dialogues(str(path))
    assert ds["id"] == ["r0", "r1"] and report.skipped["truncated_tail"] == 1
    assert [v["id"] for _, v in iter_json_array(text)] == ["r0", "r1", "r2"]


def test_csv_long_format_and_parquet(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("dialogue_id,role,text\n1,user,hi\n1,assistant,hello\n2,user,only me\n")
    ds, report = load_dialogues(str(csv))
    assert len(ds) == 1 and ds[0]["turns"] == EXPECTED and report.skipped["one_role"] == 1
    parquet = tmp_path / "t.parquet"
    ds.to_parquet(str(parquet))
    again, _ = load_dialogues(str(parquet))
    assert again[0]["turns"] == EXPECTED


def test_missing_file_and_offline_hub_name_raise_readable_errors(tmp_path, monkeypatch):
    with pytest.raises(DataSourceError, match="does not exist"):
        load_dialogues(str(tmp_path / "nope.jsonl"))
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataSourceError, match="cannot load dialogue source"):
        load_dialogues("no-such-user/no-such-dialogue-dataset")


def test_chatterbot_corpus_loads_offline():
    ds, report = load_dialogues("chatterbot", limit=20)
    assert len(ds) == 20 and all(t["role"] in ("user", "assistant") for d in ds["turns"] for t in d)


def test_split_functions_match_hand_computed_sha1():
    # sha1("QWJhYvA") = 4b2dc0a5...2d45, an integer that is 3 mod 10; sha1("x") is 0 mod 10.
    assert root_id("QWJhYvA_12") == "QWJhYvA" and root_id("plain") == "plain"
    assert split_bucket("QWJhYvA_0") == split_bucket("QWJhYvA_7") == 3
    assert split_of("QWJhYvA_0") == "train" and train_half("QWJhYvA_0") == "A"
    assert split_bucket("abc") == 7 and train_half("abc") == "B"
    assert split_of("d29") == "dev" and split_of("d13") == "test" and train_half("d13") is None


def test_splits_are_deterministic_disjoint_and_keep_segments_together(tmp_path):
    lines = []
    for root in range(60):
        for seg in range(2):
            lines.append(json.dumps({"id": f"root{root}_{seg}", "dialog": ["q", "a"]}))
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines))
    parts = {s: set(load_dialogues(str(path), split=s)[0]["id"]) for s in ("train", "dev", "test")}
    assert sum(len(p) for p in parts.values()) == 120
    assert not (parts["train"] & parts["dev"]) and not (parts["train"] & parts["test"])
    for ids in parts.values():
        roots = {root_id(i) for i in ids}
        assert all({f"{r}_0", f"{r}_1"} <= ids for r in roots)
    assert (
        set(load_dialogues(str(path), split="train_A")[0]["id"])
        | set(load_dialogues(str(path), split="train_B")[0]["id"])
        == parts["train"]
    )
    with pytest.raises(ValueError, match="unknown split"):
        load_dialogues(str(path), split="validation")


def _word_tokenizer() -> Tokenizer:
    vocab = {w: i for i, w in enumerate(["[UNK]", "a", "b", "c", "d"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def test_tokenize_limits_truncate_with_counted_warning():
    ds = load_dialogues_from_list(
        [{"id": "1", "dialog": ["a b c d", "a", "b", "c"]}, {"id": "2", "dialog": ["a", "b"]}]
    )
    with pytest.warns(LengthLimitWarning, match="1 turns truncated to 3 tokens, 1 turns dropped"):
        out = tokenize_dialogues(ds, _word_tokenizer(), max_turn_tokens=3, max_turns=3)
    assert out[0]["input_ids"] == [[1, 2, 4], [1], [2]]  # truncation keeps the last token
    assert out[1]["input_ids"] == [[1], [2]] and out["n_truncated_turns"] == [1, 0]


def test_tokenize_cache_reuses_identical_inputs_only(tmp_path):
    ds = load_dialogues_from_list([{"id": "1", "dialog": ["a b", "c d"]}, {"id": "2", "dialog": ["a", "b"]}])

    class Counting:
        def __init__(self):
            self.inner, self.calls = _word_tokenizer(), 0

        def to_str(self):
            return self.inner.to_str()

        def encode_batch(self, texts):
            self.calls += 1
            return self.inner.encode_batch(texts)

    tok = Counting()
    first = tokenize_dialogues(ds, tok, max_turn_tokens=8, max_turns=8, cache_dir=tmp_path)
    again = tokenize_dialogues(ds, tok, max_turn_tokens=8, max_turns=8, cache_dir=tmp_path)
    assert tok.calls == 1 and again["input_ids"] == first["input_ids"] == [[[1, 2], [3, 4]], [[1], [2]]]
    assert len(list(tmp_path.glob("tokens-*.arrow"))) == 1
    tokenize_dialogues(ds, tok, max_turn_tokens=4, max_turns=8, cache_dir=tmp_path)  # other limits
    other = load_dialogues_from_list([{"id": "1", "dialog": ["a b", "c"]}, {"id": "2", "dialog": ["a", "b"]}])
    assert tokenize_dialogues(other, tok, max_turn_tokens=8, max_turns=8, cache_dir=tmp_path)[0][
        "input_ids"
    ] == [[1, 2], [3]]
    assert tok.calls == 3 and len(list(tmp_path.glob("tokens-*.arrow"))) == 3


def load_dialogues_from_list(records):
    import datasets

    return datasets.Dataset.from_list([normalise_record(r) for r in records])
