"""Realizing: the compression result, its JSON records, and heat maps (terminal and HTML).

`CompressionResult` carries everything ARR-COC's stages produced for one dialogue:
compressed messages, kept and forced masks, each scorer's per-word scores, the balanced
score, the balancer's weights and tensions, budgets and token counts.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.text import Text

from arrcoc.words import Word


@dataclass
class CompressionResult:
    """One compressed dialogue. Lists of length N = words of the input, in reading order.

    messages: compressed messages (every message and role kept, in order).
    words: the input words. kept / forced: per word. scores: scorer name -> [N] raw scores.
    balanced: [N] balanced relevance in [0, 1]. weights / tensions: the balancer's values.
    budget: non-forced words kept (exactly). per_turn: kept non-forced words per message.
    levels: achieved fraction per message when levels of detail were used.
    shares: the budget shares the balancer gave to rankings of their own (``reserved``: the reserved
    score's, ``recent``: the last words'), as applied to this dialogue.
    """

    messages: list[dict[str, str]]
    words: list[Word]
    kept: list[bool]
    forced: list[bool]
    scores: dict[str, list[float]]
    balanced: list[float]
    weights: dict[str, float]
    tensions: dict[str, float]
    budget: int
    per_turn: list[int]
    levels: list[float] | None = None
    id: Any = None
    shares: dict[str, float] | None = None

    @property
    def origin_tokens(self) -> int:
        """Words in the input."""
        return len(self.words)

    @property
    def compressed_tokens(self) -> int:
        """Words kept, forced words included."""
        return sum(self.kept)

    @property
    def forced_tokens(self) -> int:
        """Words kept because they were forced (not counted against the budget)."""
        return sum(self.forced)

    @property
    def ratio(self) -> float:
        """Achieved ratio ``compressed_tokens / origin_tokens`` (1.0 for an empty dialogue)."""
        return self.compressed_tokens / self.origin_tokens if self.origin_tokens else 1.0

    def to_record(self) -> dict[str, Any]:
        """The ``arrcoc compress`` output line."""
        tokens = [
            {"text": w.text, "message": w.message, "score": round(s, 6), "kept": k, "forced": f}
            for w, s, k, f in zip(self.words, self.balanced, self.kept, self.forced, strict=True)
        ]
        return {
            "id": self.id,
            "messages": self.messages,
            "tokens": tokens,
            "origin_tokens": self.origin_tokens,
            "compressed_tokens": self.compressed_tokens,
            "ratio": round(self.ratio, 6),
            "budget": self.budget,
            "forced_tokens": self.forced_tokens,
            "weights": self.weights,
            "tensions": self.tensions,
            **({"shares": self.shares} if self.shares else {}),
        }

    def to_score_record(self) -> dict[str, Any]:
        """The ``arrcoc score`` output line: every word with every scorer's score, nothing dropped."""
        tokens = []
        for i, w in enumerate(self.words):
            entry: dict[str, Any] = {
                "text": w.text,
                "message": w.message,
                "score": round(self.balanced[i], 6),
            }
            entry.update({name: round(v[i], 6) for name, v in self.scores.items()})
            tokens.append(entry)
        return {
            "id": self.id,
            "tokens": tokens,
            "origin_tokens": self.origin_tokens,
            "weights": self.weights,
            "tensions": self.tensions,
            **({"shares": self.shares} if self.shares else {}),
        }


def _heat_rgb(score: float) -> tuple[int, int, int]:
    """Pale yellow (0) to deep red (1)."""
    s = min(max(score, 0.0), 1.0)
    return 255, int(245 - 190 * s), int(200 - 200 * s)


def _by_message(result: CompressionResult) -> list[list[int]]:
    """Word indices grouped by message (empty lists for messages without words)."""
    groups: list[list[int]] = [[] for _ in result.messages]
    for i, word in enumerate(result.words):
        groups[word.message].append(i)
    return groups


def heatmap_text(result: CompressionResult) -> Text:
    """A rich `Text`: words on a background coloured by balanced score; dropped words struck through."""
    text = Text()
    for m, indices in enumerate(_by_message(result)):
        text.append(("\n" if m else "") + f"[{result.messages[m]['role']}] ", style="bold")
        for i in indices:
            r, g, b = _heat_rgb(result.balanced[i])
            style = f"black on rgb({r},{g},{b})"
            style += ("" if result.kept[i] else " strike dim") + (" underline" if result.forced[i] else "")
            text.append(result.words[i].text, style=style)
            text.append(" ")
    text.append(
        f"\nkept {result.compressed_tokens}/{result.origin_tokens} words (ratio {result.ratio:.3f}; "
        f"{result.forced_tokens} forced); colour = relevance, struck = dropped, underlined = forced",
        style="italic",
    )
    return text


def print_heatmap(result: CompressionResult, console: Console | None = None) -> None:
    """Print the terminal heat map."""
    (console or Console()).print(heatmap_text(result))


def heatmap_html(result: CompressionResult, title: str = "arrcoc relevance heat map") -> str:
    """A standalone HTML page: one paragraph per message, words coloured by relevance, scores on hover."""
    rows: list[list[str]] = []
    for indices in _by_message(result):
        spans = []
        for i in indices:
            r, g, b = _heat_rgb(result.balanced[i])
            tip = ", ".join(f"{name} {v[i]:.3f}" for name, v in result.scores.items())
            tip = f"relevance {result.balanced[i]:.3f}; {tip}" + ("; forced" if result.forced[i] else "")
            cls = "kept" if result.kept[i] else "dropped"
            spans.append(
                f'<span class="{cls}" style="background:rgb({r},{g},{b})" '
                f'title="{html.escape(tip)}">{html.escape(result.words[i].text)}</span>'
            )
        rows.append(spans)
    body = "\n".join(
        f"<p><b>{html.escape(result.messages[m]['role'])}</b>: {' '.join(spans)}</p>"
        for m, spans in enumerate(rows)
    )
    weights = ", ".join(f"{k} {v:.2f}" for k, v in result.weights.items())
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.9}"
        "span{padding:1px 2px;border-radius:3px}.dropped{opacity:.45;text-decoration:line-through}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>kept {result.compressed_tokens} of {result.origin_tokens} words "
        f"(ratio {result.ratio:.3f}, {result.forced_tokens} forced); weights: {weights}. "
        "Colour = balanced relevance; struck-through words are dropped; hover for each scorer.</p>"
        f"{body}</body></html>\n"
    )
