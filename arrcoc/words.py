"""Dialogue messages and their whitespace-delimited words (the unit arrcoc scores and keeps).

A dialogue is a list of ``{"role": str, "content": str}`` messages. arrcoc scores and
allocates *words*: maximal runs of non-whitespace characters in a message's content
(``str.split()``). Subword scores from a model are aggregated to these words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Roles accepted in ``messages``; ShareGPT speaker names are mapped onto them.
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES: dict[str, str] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "assistant": "assistant",
    "system": "system",
}
#: Default cap on the words of one dialogue; longer inputs are rejected with a clear message.
MAX_DIALOGUE_WORDS = 16384


class DialogueInputError(ValueError):
    """A dialogue (messages, roles, contents or its size) is not valid input."""


@dataclass(frozen=True)
class Word:
    """One whitespace-delimited word: its text, its message index and its position in that message."""

    text: str
    message: int
    position: int


def validate_messages(messages: Any, max_words: int = MAX_DIALOGUE_WORDS) -> list[dict[str, str]]:
    """Check a dialogue and return it as a list of plain ``{"role", "content"}`` dicts.

    Raises `DialogueInputError` naming the first problem: not a non-empty list, a message
    that is not an object, a missing ``role``/``content``, non-string content, an unknown
    role, or more than ``max_words`` words in total.
    """
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        raise DialogueInputError(f"'messages' must be a list of messages, got {type(messages).__name__}")
    if len(messages) == 0:
        raise DialogueInputError("'messages' is empty; a dialogue needs at least one message")
    clean: list[dict[str, str]] = []
    total = 0
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise DialogueInputError(f"message {i} must be an object with 'role' and 'content'")
        for key in ("role", "content"):
            if key not in message:
                raise DialogueInputError(f"message {i} has no '{key}' field")
        role, content = message["role"], message["content"]
        if not isinstance(content, str):
            raise DialogueInputError(f"message {i}: 'content' must be a string, got {type(content).__name__}")
        if role not in ROLES:
            raise DialogueInputError(
                f"message {i}: unknown role {role!r}; expected one of {', '.join(ROLES)}"
            )
        total += len(content.split())
        if total > max_words:
            raise DialogueInputError(
                f"message {i}: the dialogue has more than {max_words} words "
                f"(message {i} alone has {len(content.split())}); split it or raise the word limit"
            )
        clean.append({"role": role, "content": content})
    return clean


def split_words(messages: Sequence[Mapping[str, str]]) -> list[Word]:
    """All words of a dialogue in reading order (message by message, ``str.split()`` within)."""
    return [
        Word(text, m, p)
        for m, message in enumerate(messages)
        for p, text in enumerate(message["content"].split())
    ]


def join_kept(
    messages: Sequence[Mapping[str, str]], words: Sequence[Word], kept: Sequence[bool]
) -> list[dict]:
    """Messages with only the kept words (single-space joined); every message and role stays, in order."""
    contents: list[list[str]] = [[] for _ in messages]
    for word, keep in zip(words, kept, strict=True):
        if keep:
            contents[word.message].append(word.text)
    return [{"role": m["role"], "content": " ".join(c)} for m, c in zip(messages, contents, strict=True)]
