from typer.testing import CliRunner

from arrcoc.cli import app
from arrcoc.demo import sample_dialogue
from arrcoc.words import split_words, validate_messages


def test_sample_dialogue_is_valid():
    dialogue = sample_dialogue()
    messages = validate_messages(dialogue["messages"])
    assert len(split_words(messages)) > 100
    assert {m["role"] for m in messages} == {"system", "user", "assistant"}


def test_demo_command_prints_heatmap_and_writes_html(tmp_path, tiny_world_model):
    model_dir = tiny_world_model.save_pretrained(tmp_path / "model")
    html = tmp_path / "demo.html"
    result = CliRunner().invoke(app, ["demo", "--model", str(model_dir), "--output", str(html)])
    assert result.exit_code == 0, result.output
    assert "[user]" in result.output and "HTML heat map written to" in result.output
    assert str(html.name) in result.output
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'class="dropped"' in page and 'class="kept"' in page


def test_demo_without_the_default_model_says_how_to_get_one(tmp_path, monkeypatch):
    from arrcoc.knowing import _load_scorer

    monkeypatch.setattr("dialogue.pretrained.DEFAULT_DIR", tmp_path / "no_default")
    _load_scorer.cache_clear()  # an earlier test may have loaded the real default in this process
    result = CliRunner().invoke(app, ["demo", "--output", str(tmp_path / "demo.html")])
    assert result.exit_code == 2
    assert "missing config.json" in result.output and "train_default_dialogue_model.sh" in result.output
