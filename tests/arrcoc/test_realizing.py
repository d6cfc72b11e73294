from rich.console import Console

from arrcoc.realizing import CompressionResult, heatmap_html, heatmap_text
from arrcoc.words import Word


def _result() -> CompressionResult:
    words = [Word("Meet", 0, 0), Word("at", 0, 1), Word("5pm", 0, 2), Word("<ok>", 1, 0)]
    return CompressionResult(
        messages=[
            {"role": "user", "content": "Meet 5pm"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": ""},
        ],
        words=words,
        kept=[True, False, True, False],
        forced=[False, False, True, False],
        scores={"coupling": [0.9, 0.1, 0.5, 0.2], "information": [0.3, 0.2, 0.8, 0.1]},
        balanced=[1.0, 0.0, 0.6, 0.25],
        weights={"coupling": 0.5, "information": 0.5},
        tensions={"focus_diversify": 0.2},
        budget=1,
        per_turn=[1, 0, 0],
        id="d1",
    )


def test_record_counts_and_fields():
    rec = _result().to_record()
    assert (rec["origin_tokens"], rec["compressed_tokens"], rec["forced_tokens"], rec["budget"]) == (
        4,
        2,
        1,
        1,
    )
    assert rec["ratio"] == 0.5
    assert rec["tokens"][2] == {"text": "5pm", "message": 0, "score": 0.6, "kept": True, "forced": True}
    score = _result().to_score_record()
    assert score["tokens"][1] == {
        "text": "at",
        "message": 0,
        "score": 0.0,
        "coupling": 0.1,
        "information": 0.2,
    }


def test_terminal_heatmap_shows_every_role_and_strikes_dropped():
    console = Console(record=True, width=100, color_system="truecolor")
    console.print(heatmap_text(_result()))
    plain = console.export_text(clear=False)
    assert "[user] Meet at 5pm" in plain and "[assistant] <ok>" in plain and plain.count("[user]") == 2
    styled = console.export_html(inline_styles=True)
    assert "line-through" in styled


def test_html_heatmap_escapes_and_marks():
    page = heatmap_html(_result())
    assert "&lt;ok&gt;" in page and "<ok>" not in page
    assert page.count('class="dropped"') == 2 and page.count('class="kept"') == 2
    assert "forced" in page and "ratio 0.500" in page
