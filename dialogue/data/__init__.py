"""Dialogue data: loading, normalisation to one schema, hashed splits, tokenisation."""

from dialogue.data.formats import (
    LABEL_NAMES,
    LoadReport,
    MalformedRecord,
    RoleMap,
    alternates,
    normalise_record,
)
from dialogue.data.sources import DataSourceError, iter_json_array, load_dialogues
from dialogue.data.splits import in_split, root_id, split_bucket, split_of, train_half
from dialogue.data.tokenize import LengthLimitWarning, tokenize_dialogues

__all__ = [
    "LABEL_NAMES",
    "DataSourceError",
    "LengthLimitWarning",
    "LoadReport",
    "MalformedRecord",
    "RoleMap",
    "alternates",
    "in_split",
    "iter_json_array",
    "load_dialogues",
    "normalise_record",
    "root_id",
    "split_bucket",
    "split_of",
    "tokenize_dialogues",
    "train_half",
]
