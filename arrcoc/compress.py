"""The compress API, ``arrcoc.compress(messages, budget=..., model=...)``, and dialogue file IO.

Pipeline (the ARR-COC stages): knowing (per-word scores from a relevance model) ->
balancing (one relevance per word) -> attending (exact allocation) -> realizing
(`CompressionResult`).

Input files: JSONL, one dialogue per line as ``{"id", "messages": [{"role", "content"}]}``
(ShareGPT ``{"id", "conversations": [{"from", "value"}]}`` lines are accepted too), or a
ShareGPT JSON file (an array of such conversations; a truncated tail is reported).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from arrcoc.attending import AllocationConfig, allocate_dialogue
from arrcoc.balancing import SCORERS, TENSIONS, Balancer, BalancingError, Tensions
from arrcoc.knowing import WordScores, resolve_model
from arrcoc.realizing import CompressionResult
from arrcoc.words import (
    MAX_DIALOGUE_WORDS,
    SHAREGPT_ROLES,
    DialogueInputError,
    join_kept,
    split_words,
    validate_messages,
)
from worldmodel.checkpoint import atomic_write_text

# Tensions tuned per method on the dev split of the relevance benchmark (docs/arrcoc.md); a method
# not listed uses the `Tensions` defaults.
METHOD_TENSIONS: dict[str, Tensions] = {
    "hybrid": Tensions(compress_particularize=0.3, focus_diversify=0.0),
}


# Methods whose balancer keeps isolated peaks on the compress side (`Balancer(keep_peaks=True)`),
# chosen with the tensions.
KEEP_PEAKS: frozenset[str] = frozenset()


def tensions_for(method: str, tensions: Tensions | None = None) -> Tensions:
    """The tensions a method balances with: ``tensions`` if given, else the method's tuned ones."""
    return tensions if tensions is not None else METHOD_TENSIONS.get(method, Tensions())


# Share of every budget that a method's balancer gives to its ``WordScores.reserved`` ranking
# (`Balancer(reserved_share=...)`; hybrid: the future-reuse head's), chosen with the tensions.
RESERVED_SHARE: dict[str, float] = {"hybrid": 0.4}
# Share of every budget that goes to the most recent words (`Balancer(recent_share=...)`), chosen with
# the reserved share.
RECENT_SHARE: dict[str, float] = {"hybrid": 0.2}


def balancer_for(
    method: str,
    tensions: Tensions | None = None,
    reserved_share: float | None = None,
    recent_share: float | None = None,
) -> Balancer:
    """The fixed-mode `Balancer` of a method: its tuned tensions (or ``tensions``), peak keeping,
    reserved share (or ``reserved_share``; it acts only where the scores carry a reserved score) and
    recent share (or ``recent_share``)."""
    share = RESERVED_SHARE.get(method, 0.0) if reserved_share is None else reserved_share
    recent = RECENT_SHARE.get(method, 0.0) if recent_share is None else recent_share
    return Balancer(
        tensions_for(method, tensions),
        keep_peaks=method in KEEP_PEAKS,
        reserved_share=share,
        recent_share=recent,
    )


class DialogueFileError(ValueError):
    """An input file that cannot be read as dialogues at all (missing, empty, not JSON/JSONL)."""


def realize(
    messages: list[dict[str, str]],
    word_scores: WordScores,
    balancer: Balancer,
    config: AllocationConfig | None,
    dialogue_id: Any = None,
) -> CompressionResult:
    """Balance the per-word scores and allocate (``config``; None keeps every word) into a result."""
    words = split_words(messages)
    n = len(words)
    stacked = torch.stack([word_scores.scores[name].float().reshape(n) for name in SCORERS], dim=-1)
    emb = None if word_scores.embeddings is None else word_scores.embeddings[None].float()
    reserved = word_scores.reserved
    if reserved is not None:
        if reserved.numel() != n:
            raise BalancingError(f"the reserved score has {reserved.numel()} values for {n} words")
        reserved = reserved.float().reshape(1, n)
    with torch.no_grad():
        out = balancer(stacked[None], torch.ones(1, n, dtype=torch.bool), emb, reserved)
    balanced = out.balanced[0]
    turn_ids = torch.tensor([w.message for w in words], dtype=torch.long)
    if config is None:
        kept, forced, budget, levels = (
            torch.ones(n, dtype=torch.bool),
            torch.zeros(n, dtype=torch.bool),
            n,
            None,
        )
        per_turn = torch.bincount(turn_ids, minlength=len(messages)).tolist()
    else:
        alloc = allocate_dialogue(balanced, turn_ids, [w.text for w in words], config)
        kept, forced, budget, per_turn = alloc.kept, alloc.forced, alloc.budget, alloc.per_turn.tolist()
        levels = None if alloc.levels is None else alloc.levels.tolist()
    return CompressionResult(
        messages=join_kept(messages, words, kept.tolist()),
        words=words,
        kept=kept.tolist(),
        forced=forced.tolist(),
        scores={name: word_scores.scores[name].float().reshape(n).tolist() for name in SCORERS},
        balanced=balanced.tolist(),
        weights={k: round(float(v), 6) for k, v in zip(SCORERS, out.weights[0], strict=True)},
        tensions={k: round(float(v), 6) for k, v in zip(TENSIONS, out.tensions[0], strict=True)},
        budget=budget,
        per_turn=per_turn,
        levels=levels,
        id=dialogue_id,
        shares=balancer.shares(reserved is not None),
    )


def compress(
    messages: Sequence[Mapping[str, str]],
    budget: float = 0.25,
    model: Any = None,
    *,
    method: str = "fast",
    allocation: AllocationConfig | None = None,
    tensions: Tensions | None = None,
    balancer: Balancer | None = None,
    force_digits: bool = False,
    force_terms: Sequence[str] = (),
    dialogue_id: Any = None,
    max_words: int = MAX_DIALOGUE_WORDS,
) -> CompressionResult:
    """Keep the most relevant words of a dialogue within ``budget``.

    messages: ``[{"role", "content"}, ...]``. budget: a ratio of the dialogue's words (< 1)
    or a word count (>= 1), met exactly; forced words (digits / ``force_terms`` on
    request) are kept on top and reported separately. model: None (the shipped default
    DialogueWorldModel), a model directory, a DialogueWorldModel, or any object with
    ``score(messages, method) -> WordScores``. method: ``fast`` (gradient x input future
    coupling), ``exact`` (occlusion), ``reuse`` (a learned future-reuse head) or ``hybrid``
    (reuse and fast mixed). ``tensions``: the balancer's dials (default: the method's tuned ones,
    `METHOD_TENSIONS`). ``allocation`` overrides budget and forcing with a full
    `AllocationConfig` (per-turn min/max, curve, levels of detail).
    """
    clean = validate_messages(messages, max_words)
    config = allocation or AllocationConfig(
        budget=budget, force_digits=force_digits, force_terms=tuple(force_terms)
    )
    word_scores = resolve_model(model).score(clean, method)
    balancer = balancer or balancer_for(method, tensions)
    return realize(clean, word_scores, balancer, config, dialogue_id)


def score(
    messages: Sequence[Mapping[str, str]],
    model: Any = None,
    *,
    method: str = "fast",
    tensions: Tensions | None = None,
    dialogue_id: Any = None,
    max_words: int = MAX_DIALOGUE_WORDS,
) -> CompressionResult:
    """Every scorer's per-word scores and the balanced score; nothing dropped."""
    clean = validate_messages(messages, max_words)
    word_scores = resolve_model(model).score(clean, method)
    return realize(clean, word_scores, balancer_for(method, tensions), None, dialogue_id)


@dataclass
class InputDialogue:
    """One dialogue read from a file, or the error that made it unreadable (``line`` is 1-based)."""

    line: int
    id: Any = None
    messages: list[dict[str, str]] | None = None
    error: str | None = None


def parse_dialogue(obj: Any, max_words: int = MAX_DIALOGUE_WORDS) -> tuple[Any, list[dict[str, str]]]:
    """``(id, messages)`` from a ``{"id", "messages"}`` or ShareGPT ``{"id", "conversations"}`` object."""
    if not isinstance(obj, Mapping):
        raise DialogueInputError(f"expected a JSON object, got {type(obj).__name__}")
    if "id" not in obj:
        raise DialogueInputError("missing field 'id'")
    if "messages" in obj:
        return obj["id"], validate_messages(obj["messages"], max_words)
    if "conversations" not in obj:
        raise DialogueInputError("missing field 'messages' (or ShareGPT 'conversations')")
    turns = obj["conversations"]
    if not isinstance(turns, list):
        raise DialogueInputError("'conversations' must be a list")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping) or "from" not in turn or "value" not in turn:
            raise DialogueInputError(f"conversation turn {i} needs 'from' and 'value'")
        speaker = str(turn["from"]).lower()
        if speaker not in SHAREGPT_ROLES:
            raise DialogueInputError(f"conversation turn {i}: unknown speaker {turn['from']!r}")
        messages.append({"role": SHAREGPT_ROLES[speaker], "content": turn["value"]})
    return obj["id"], validate_messages(messages, max_words)


def _entry(line: int, obj: Any, max_words: int) -> InputDialogue:
    try:
        dialogue_id, messages = parse_dialogue(obj, max_words)
    except DialogueInputError as err:
        return InputDialogue(line, obj.get("id") if isinstance(obj, Mapping) else None, error=str(err))
    return InputDialogue(line, dialogue_id, messages)


def _json_array(text: str, max_words: int) -> Iterator[InputDialogue]:
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            yield InputDialogue(line, error=f"invalid or truncated JSON from here to the end: {err.msg}")
            return
        yield _entry(line, obj, max_words)


def read_dialogues(path: str | Path, max_words: int = MAX_DIALOGUE_WORDS) -> Iterator[InputDialogue]:
    """Dialogues of a JSONL or ShareGPT JSON file, one `InputDialogue` per line/entry, errors included.

    Blank JSONL lines are skipped (they hold no dialogue). Raises `DialogueFileError` if the
    file is missing, unreadable or empty.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DialogueFileError(f"cannot read {path}: {err}") from None
    if not text.strip():
        raise DialogueFileError(f"{path} is empty: expected JSONL dialogues or a ShareGPT JSON array")
    if text.lstrip().startswith("["):
        yield from _json_array(text, max_words)
        return
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            yield InputDialogue(line, error=f"invalid JSON: {err.msg} (column {err.colno})")
            continue
        yield _entry(line, obj, max_words)


def process_file(
    input_path: str | Path,
    output_path: str | Path,
    handle: Callable[[InputDialogue], dict[str, Any]],
    max_words: int = MAX_DIALOGUE_WORDS,
    on_error: Callable[[str], None] | None = None,
) -> tuple[int, list[str]]:
    """Run ``handle`` on every dialogue of ``input_path``; write the records as JSONL atomically.

    A dialogue that fails (bad input or a ValueError from ``handle``) is reported as
    ``"<file>:<line>: <problem>"`` and skipped; all others are written. Returns
    ``(records written, error messages)``.
    """
    name = Path(input_path).name
    records, errors = [], []
    for item in read_dialogues(input_path, max_words):
        problem = item.error
        if problem is None:
            try:
                records.append(handle(item))
            except ValueError as err:
                problem = str(err)
        if problem is not None:
            errors.append(f"{name}:{item.line}: {problem}")
            if on_error is not None:
                on_error(errors[-1])
    atomic_write_text(output_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return len(records), errors


def compress_file(
    input_path: str | Path,
    output_path: str | Path,
    allocation: AllocationConfig | None,
    model: Any = None,
    *,
    method: str = "fast",
    tensions: Tensions | None = None,
    balancer: Balancer | None = None,
    max_words: int = MAX_DIALOGUE_WORDS,
    on_error: Callable[[str], None] | None = None,
) -> tuple[int, list[str]]:
    """Compress every dialogue of ``input_path`` into ``output_path`` (JSONL), the ``arrcoc compress`` lines.

    With ``allocation=None`` nothing is dropped and the lines are ``arrcoc score`` records
    (every word with each scorer's score). ``balancer`` replaces the method's (`balancer_for`).
    Returns ``(records written, error messages)``.
    """
    relevance, balancer = resolve_model(model), balancer or balancer_for(method, tensions)

    def handle(item: InputDialogue) -> dict[str, Any]:
        result = realize(item.messages, relevance.score(item.messages, method), balancer, allocation, item.id)
        return result.to_score_record() if allocation is None else result.to_record()

    return process_file(input_path, output_path, handle, max_words, on_error)
