"""Typed dataclass configs with presets and `key=value` command-line overrides.

Built on OmegaConf structured configs: types are checked and unknown keys are
rejected. Example::

    cfg = resolve_config(DreamerConfig, ["model.deter=256", "seed=3"], preset={"lr": 1e-4})
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value the user gave is not valid."""


def valid_keys(cls: type) -> list[str]:
    """All dotted keys of a (nested) dataclass type, e.g. ``["model.deter", "seed"]``."""
    keys: list[str] = []
    for field in dataclasses.fields(cls):
        sub = field.type if isinstance(field.type, type) else None
        if sub is None and field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            value = field.default_factory()  # type: ignore[misc]
            sub = type(value) if dataclasses.is_dataclass(value) else None
        if sub is not None and dataclasses.is_dataclass(sub):
            keys += [f"{field.name}.{k}" for k in valid_keys(sub)]
        else:
            keys.append(field.name)
    return keys


def _unknown_key_error(cls: type, key: str) -> ConfigError:
    keys = valid_keys(cls)
    close = difflib.get_close_matches(key, keys, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(
        f"unknown config key '{key}' for {cls.__name__}.{hint} Valid keys: {', '.join(keys)}"
    )


def _parse_overrides(cls: type, overrides: Sequence[str]) -> Any:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"config override '{item}' is not of the form key=value")
        key = item.split("=", 1)[0].strip().lstrip("-")
        if key not in valid_keys(cls) and not any(k.startswith(key + ".") for k in valid_keys(cls)):
            raise _unknown_key_error(cls, key)
    return OmegaConf.from_dotlist([item.lstrip("-") for item in overrides])


def resolve_config(
    cls: type[T], overrides: Sequence[str] = (), preset: Mapping[str, Any] | None = None
) -> T:
    """Build ``cls()`` updated by a preset (nested dict) and then by ``key=value`` overrides.

    Raises ConfigError naming the bad key (with the valid keys) or the bad value.
    """
    base = OmegaConf.structured(cls)
    try:
        if preset:
            base = OmegaConf.merge(base, OmegaConf.create(dict(preset)))
        base = OmegaConf.merge(base, _parse_overrides(cls, overrides))
    except ConfigError:
        raise
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or getattr(err, "key", None)
        if key and key not in valid_keys(cls):
            raise _unknown_key_error(cls, str(key)) from None
        raise ConfigError(f"invalid config value for '{key}': {err.msg}") from None
    return OmegaConf.to_object(base)  # type: ignore[return-value]


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A (nested) dataclass instance as a plain JSON-able dict."""
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild a config saved with `config_to_dict`; unknown keys raise ConfigError."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.create(dict(data)))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or getattr(err, "key", None)
        raise _unknown_key_error(cls, str(key)) from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]
