"""Normalise dialogue records of the common formats into one schema.

The schema (one record per dialogue)::

    {"id": str, "turns": [{"role": "user" | "assistant" | "system", "text": str}, ...],
     "labels": {"relevance": float | None, "engagement": ..., "coherence": ..., "task_success": ...}}

Recognised input formats (detected per record):

- ShareGPT: ``{"id", "conversations": [{"from": "human" | "gpt" | ..., "value": str}]}``
- OpenAI messages: ``{"messages": [{"role": ..., "content": str | [{"type": "text", "text": str}]}]}``
- plain utterance lists (DailyDialog / chatterbot style): ``{"dialog": [str, ...]}`` or a bare
  ``[str, ...]``; roles alternate starting with ``first_role``
- already normalised: ``{"turns": [{"role", "text"}]}``

A record that cannot be normalised raises `MalformedRecord` with a short ``reason`` key
(used to count skipped records) and a readable message.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ROLES = ("user", "assistant", "system")
LABEL_NAMES = ("relevance", "engagement", "coherence", "task_success")

DEFAULT_ROLE_MAP: dict[str, str] = {
    "human": "user",
    "user": "user",
    "person": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "system": "system",
}

_TURN_LIST_KEYS = (
    "conversations",
    "messages",
    "turns",
    "dialog",
    "dialogue",
    "utterances",
    "conversation",
)


class MalformedRecord(ValueError):
    """A record that cannot be normalised; ``reason`` is a short key for counting."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class RoleMap:
    """Maps raw speaker names (case-insensitive) to ``user`` / ``assistant`` / ``system``.

    ``RoleMap({"customer": "user", "agent": "assistant"})`` extends the default mapping.
    """

    extra: Mapping[str, str] = field(default_factory=dict)
    first_role: str = "user"

    def __post_init__(self) -> None:
        for raw, role in self.extra.items():
            if role not in ROLES:
                raise ValueError(
                    f"role map entry {raw!r} -> {role!r}: target must be one of {ROLES}"
                )
        if self.first_role not in ("user", "assistant"):
            raise ValueError(f"first_role must be 'user' or 'assistant', got {self.first_role!r}")
        self.table = {**DEFAULT_ROLE_MAP, **{k.lower(): v for k, v in self.extra.items()}}

    def __call__(self, raw: Any) -> str:
        if not isinstance(raw, str):
            raise MalformedRecord("unknown_role", f"role {raw!r} is not a string")
        role = self.table.get(raw.strip().lower())
        if role is None:
            raise MalformedRecord(
                "unknown_role",
                f"unknown role {raw!r}; known roles: {sorted(self.table)} (extend with RoleMap(extra=...))",
            )
        return role


@dataclass
class LoadReport:
    """Counts of skipped records (by reason) and of repairs (truncations, removed empty turns)."""

    loaded: int = 0
    skipped: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def skip(self, err: MalformedRecord, where: str) -> None:
        self.skipped[err.reason] += 1
        self.examples.setdefault(err.reason, f"{where}: {err}")

    def warn(self, key: str, count: int = 1) -> None:
        if count:
            self.warnings[key] += count

    def merge(self, other: LoadReport) -> LoadReport:
        self.loaded += other.loaded
        self.skipped.update(other.skipped)
        self.warnings.update(other.warnings)
        for key, value in other.examples.items():
            self.examples.setdefault(key, value)
        return self

    def summary(self) -> str:
        """One readable paragraph, e.g. ``loaded 10 dialogues; skipped 2 (one_role: 2, ...)``."""
        parts = [f"loaded {self.loaded} dialogues"]
        if self.skipped:
            reasons = ", ".join(f"{k}: {v}" for k, v in self.skipped.most_common())
            parts.append(f"skipped {sum(self.skipped.values())} malformed records ({reasons})")
        if self.warnings:
            parts.append(
                "repairs: " + ", ".join(f"{k}: {v}" for k, v in self.warnings.most_common())
            )
        lines = ["; ".join(parts)]
        lines += [f"  e.g. {reason}: {text[:200]}" for reason, text in self.examples.items()]
        return "\n".join(lines)


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        texts = []
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise MalformedRecord(
                    "non_string_content", f"{where}: content part {part!r:.80} has no text"
                )
        return "\n".join(texts)
    raise MalformedRecord(
        "non_string_content", f"{where}: content must be a string, got {type(content).__name__}"
    )


def _turn_list(record: Mapping[str, Any]) -> tuple[str, Any]:
    for key in _TURN_LIST_KEYS:
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, str):  # a JSON-encoded list in a CSV / parquet cell
            if not value.lstrip().startswith("["):
                raise MalformedRecord(
                    "no_turns", f"column {key!r} holds a plain string, not a list of turns"
                )
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise MalformedRecord(
                    "invalid_json", f"column {key!r} holds a string that is not JSON"
                ) from None
        return key, value
    raise MalformedRecord(
        "no_turns",
        f"no turn list found (expected one of the keys {list(_TURN_LIST_KEYS)}), keys: {sorted(record)}",
    )


def _raw_turns(items: Any, roles: RoleMap) -> list[tuple[str, Any]]:
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise MalformedRecord("no_turns", f"the turn list is a {type(items).__name__}, not a list")
    out = []
    alternate = ("user", "assistant") if roles.first_role == "user" else ("assistant", "user")
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append((alternate[i % 2], item))
        elif isinstance(item, Mapping):
            raw_role = next(
                (item[k] for k in ("role", "from", "speaker", "author") if k in item), None
            )
            content = next(
                (item[k] for k in ("content", "value", "text", "utterance") if k in item), None
            )
            if raw_role is None:
                raise MalformedRecord(
                    "unknown_role", f"turn {i} has no role/from/speaker key: {sorted(item)}"
                )
            out.append((roles(raw_role), _text_of(content, f"turn {i}")))
        else:
            raise MalformedRecord(
                "bad_turn", f"turn {i} is a {type(item).__name__}, not a string or a mapping"
            )
    return out


def _labels(record: Mapping[str, Any]) -> dict[str, float | None]:
    source = record.get("labels") if isinstance(record.get("labels"), Mapping) else record
    labels: dict[str, float | None] = {}
    for name in LABEL_NAMES:
        value = source.get(name)
        if value is not None and not (
            isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0
        ):
            raise MalformedRecord("bad_label", f"label {name}={value!r} is not a number in [0, 1]")
        labels[name] = None if value is None else float(value)
    return labels


def normalise_record(
    record: Any,
    roles: RoleMap | None = None,
    default_id: str = "",
    report: LoadReport | None = None,
    require_both_roles: bool = True,
) -> dict[str, Any]:
    """One raw record (any recognised format) -> the schema above.

    Empty turns are removed (counted in ``report.warnings``). Raises `MalformedRecord` for
    empty dialogues, non-string content, unknown roles, bad labels and (unless
    ``require_both_roles=False``) dialogues without both a user and an assistant turn.
    """
    roles = roles or RoleMap()
    if isinstance(record, Sequence) and not isinstance(record, (str, bytes, Mapping)):
        record = {"dialog": list(record)}
    if not isinstance(record, Mapping):
        raise MalformedRecord(
            "bad_record", f"record is a {type(record).__name__}, not a mapping or a list"
        )
    _, items = _turn_list(record)
    turns = []
    empty = 0
    for role, text in _raw_turns(items, roles):
        if not text.strip():
            empty += 1
            continue
        turns.append({"role": role, "text": text})
    if report is not None:
        report.warn("empty turns removed", empty)
    if not turns:
        raise MalformedRecord("empty_dialogue", "the dialogue has no non-empty turns")
    present = {t["role"] for t in turns} - {"system"}
    if require_both_roles and present != {"user", "assistant"}:
        raise MalformedRecord(
            "one_role",
            f"a dialogue needs user and assistant turns, found only {sorted(present) or ['system']}",
        )
    raw_id = record.get("id", record.get("conversation_id", default_id))
    return {
        "id": str(raw_id if raw_id is not None else default_id),
        "turns": turns,
        "labels": _labels(record),
    }


def alternates(dialogue: Mapping[str, Any]) -> bool:
    """True when the non-system turns strictly alternate user/assistant, starting with the user."""
    roles = [t["role"] for t in dialogue["turns"] if t["role"] != "system"]
    return bool(roles) and all(r == ("user", "assistant")[i % 2] for i, r in enumerate(roles))
