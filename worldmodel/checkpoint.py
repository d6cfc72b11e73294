"""Atomic checkpoints: tensors in safetensors, everything else in JSON.

A checkpoint is one ``.safetensors`` file. Nested state (module and optimiser
state dicts, counters, RNG states) is flattened: tensors are stored under dotted
paths, and the non-tensor skeleton plus user metadata go into the file's JSON
header. Files are written to a temporary name, fsynced and renamed, so a process
killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

_TENSOR = "__tensor__"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match the current config."""


def _atomic_write(path: str | os.PathLike, write: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to ``path`` atomically (temp file + rename)."""
    return _atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(obj, Mapping):
        return {str(k): _flatten(v, f"{prefix}.{k}" if prefix else str(k), tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint value of type {type(obj).__name__} at '{prefix}'")


def _unflatten(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def _restore_int_keys(obj: Any) -> Any:
    """Optimiser state dicts key their per-parameter state by int; JSON makes them str."""
    if isinstance(obj, dict):
        return {(int(k) if k.isdigit() else k): _restore_int_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore_int_keys(v) for v in obj]
    return obj


def save_checkpoint(
    path: str | os.PathLike, state: Mapping[str, Any], meta: Mapping[str, Any] | None = None
) -> Path:
    """Save nested ``state`` and JSON ``meta`` to one safetensors file, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "", tensors)
    header = {"skeleton": json.dumps(skeleton), "meta": json.dumps(dict(meta or {}))}
    # safetensors refuses tensors that share memory; clone makes each one its own.
    tensors = {k: v.clone() for k, v in tensors.items()}
    return _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a checkpoint written by `save_checkpoint`. Returns ``(state, meta)``.

    Raises CheckpointError for a missing, truncated or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        skeleton = json.loads(header["skeleton"])
        meta = json.loads(header.get("meta", "{}"))
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or not an arrcoc checkpoint: {err}") from None
    return _restore_int_keys(_unflatten(skeleton, tensors)), meta


def _flat_items(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_items(value, name + "."))
        else:
            out[name] = value
    return out


def check_config_compatible(
    saved: Mapping[str, Any], current: Mapping[str, Any], ignore: tuple[str, ...] = ()
) -> None:
    """Raise CheckpointError naming every key whose value differs between two configs.

    Keys starting with an entry of ``ignore`` (e.g. ``"run."``) are not compared.
    """
    a, b = _flat_items(saved), _flat_items(current)
    bad = [
        f"{k}: checkpoint={a.get(k, '<missing>')!r} current={b.get(k, '<missing>')!r}"
        for k in sorted(set(a) | set(b))
        if not k.startswith(ignore) and a.get(k, "<missing>") != b.get(k, "<missing>")
    ]
    if bad:
        raise CheckpointError("checkpoint was made with a different config: " + "; ".join(bad))
