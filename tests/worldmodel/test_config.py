from dataclasses import dataclass, field

import pytest

from worldmodel.config import ConfigError, config_from_dict, config_to_dict, resolve_config, valid_keys


@dataclass
class Model:
    deter: int = 512
    act: str = "silu"


@dataclass
class Config:
    seed: int = 0
    lr: float = 1e-4
    model: Model = field(default_factory=Model)


def test_presets_then_overrides():
    cfg = resolve_config(Config, ["model.deter=64", "seed=3"], preset={"lr": 3e-4, "model": {"deter": 128}})
    assert (cfg.seed, cfg.lr, cfg.model.deter, cfg.model.act) == (3, 3e-4, 64, "silu")
    assert isinstance(cfg, Config) and isinstance(cfg.model, Model)


def test_unknown_key_lists_valid_keys_and_suggests():
    with pytest.raises(ConfigError) as err:
        resolve_config(Config, ["model.detr=3"])
    msg = str(err.value)
    assert "unknown config key 'model.detr'" in msg
    assert "Did you mean model.deter" in msg
    assert "Valid keys: seed, lr, model.deter, model.act" in msg
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        resolve_config(Config, preset={"bogus": 1})


def test_bad_value_and_bad_syntax():
    with pytest.raises(ConfigError, match="seed"):
        resolve_config(Config, ["seed=abc"])
    with pytest.raises(ConfigError, match="key=value"):
        resolve_config(Config, ["seed"])


def test_dict_roundtrip():
    cfg = resolve_config(Config, ["model.act=relu"])
    assert config_from_dict(Config, config_to_dict(cfg)) == cfg
    assert valid_keys(Config) == ["seed", "lr", "model.deter", "model.act"]
