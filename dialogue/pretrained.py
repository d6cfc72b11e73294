"""Save and load `DialogueWorldModel` directories (Hugging Face conventions).

A model directory holds ``config.json`` (``model_type``, the `DialogueConfig`, the
encoder fingerprint), ``model.safetensors`` (weights; a frozen encoder's weights are not
stored, it is loaded from ``config.encoder.name``) and ``tokenizer.json`` (decoder BPE).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from dialogue.config import DialogueConfig
from dialogue.encoder import TurnEncoder
from worldmodel.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from worldmodel.config import config_from_dict, config_to_dict
from worldmodel.run import package_version

MODEL_TYPE = "arrcoc-dialogue"
DEFAULT_DIR = Path(__file__).resolve().parent / "default"


class EncoderMismatchError(CheckpointError):
    """The encoder given or found differs from the one the checkpoint was trained with."""


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    skip_encoder = not model.config.encoder.trainable
    return {
        k: v.detach().cpu().contiguous().clone()
        for k, v in model.state_dict().items()
        if not (skip_encoder and k.startswith("encoder."))
    }


def save_pretrained(model, path: str | Path) -> Path:
    """Write the model directory atomically, file by file. Returns the directory."""
    if model.tokenizer is None:
        raise ValueError("cannot save a DialogueWorldModel without its decoder tokenizer")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(
        path / "model.safetensors", safetensors_bytes(_weights(model), {"format": "pt"})
    )
    atomic_write_text(path / "tokenizer.json", model.tokenizer.to_str())
    atomic_write_json(
        path / "config.json",
        {
            "model_type": MODEL_TYPE,
            "arrcoc_version": package_version(),
            "config": config_to_dict(model.config),
            "encoder_fingerprint": model.encoder.fingerprint(),
        },
    )
    return path


def _check_encoder(saved: dict, encoder: TurnEncoder, path: Path, keys: tuple[str, ...] = ()) -> None:
    """Raise EncoderMismatchError unless ``encoder``'s fingerprint matches (on ``keys``; all if empty)."""
    current = encoder.fingerprint()
    bad = [
        f"{k}: checkpoint={saved.get(k)!r} given={current.get(k)!r}"
        for k in sorted(keys or saved)
        if saved.get(k) != current.get(k)
    ]
    if bad:
        raise EncoderMismatchError(
            f"{path} was trained with encoder {saved.get('name')!r}, which differs from the loaded encoder "
            f"{current['name']!r} ({'; '.join(bad)}); load the matching encoder or retrain"
        )


def load_pretrained(
    path: str | Path | None = None, encoder: TurnEncoder | None = None, device: str = "cpu"
):
    """Load a model directory (None: the shipped default). Raises CheckpointError subclasses."""
    from tokenizers import Tokenizer

    from dialogue.model import DialogueWorldModel

    path = Path(path) if path is not None else DEFAULT_DIR
    files = {name: path / name for name in ("config.json", "model.safetensors", "tokenizer.json")}
    missing = [name for name, f in files.items() if not f.is_file()]
    if missing:
        raise CheckpointError(
            f"{path} is not a dialogue model directory: missing {', '.join(missing)}"
        )
    try:
        meta = json.loads(files["config.json"].read_text(encoding="utf-8"))
        if meta.get("model_type") != MODEL_TYPE:
            raise CheckpointError(
                f"{files['config.json']} has model_type {meta.get('model_type')!r}, not {MODEL_TYPE!r}"
            )
        config = config_from_dict(DialogueConfig, meta["config"])
        tokenizer = Tokenizer.from_file(str(files["tokenizer.json"]))
        weights = load_file(str(files["model.safetensors"]))
    except CheckpointError:
        raise
    except Exception as err:  # JSON, config, safetensors and tokenizers (pyo3) errors alike
        raise CheckpointError(f"cannot read the dialogue model in {path}: {err}") from None
    if encoder is None:
        encoder = TurnEncoder(
            config.encoder.name, config.encoder.trainable, config.encoder.max_length
        )
    # A fine-tuned encoder's weights are in the file: check its architecture now, its weights after loading.
    saved, fine_tuned = meta.get("encoder_fingerprint", {}), any(k.startswith("encoder.") for k in weights)
    _check_encoder(saved, encoder, path, ("name", "hidden_size", "vocab_size") if fine_tuned else ())
    model = DialogueWorldModel(config, tokenizer=tokenizer, encoder=encoder)
    result = model.load_state_dict(weights, strict=False)
    if fine_tuned:
        _check_encoder(saved, model.encoder, path)
    unexpected = list(result.unexpected_keys)
    missing_keys = [k for k in result.missing_keys if not k.startswith("encoder.")]
    if unexpected or missing_keys:
        raise CheckpointError(
            f"{files['model.safetensors']} does not fit the config: missing {missing_keys[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return model.to(device).eval()
