import pytest

from worldmodel.config import ConfigError
from worldmodel.presets import PRESETS, dreamer_config, updates_per_env_step


def test_reference_sizes_and_tiny_cpu_preset():
    nature = dreamer_config("12m")
    m = nature.model
    assert (m.deter, m.hidden, m.stoch, m.classes) == (2048, 256, 32, 16)
    assert nature.model.gru_blocks == 8 and nature.optim.name == "laprop" and nature.loss.dyn == 1.0
    assert dreamer_config("s").loss.dyn == 0.5
    tiny = dreamer_config("tiny")
    assert (tiny.model.deter, tiny.model.stoch, tiny.batch_length) == (128, 16, 32)
    assert tiny.behavior.imag_starts == 256
    # train_ratio 128 replayed steps per env step at 16 x 32 = one update every 4 env steps
    assert updates_per_env_step(tiny) == pytest.approx(0.25)
    # the faster critic, shorter discount and gentler actor of the CPU preset ...
    assert (tiny.behavior.gamma, tiny.behavior.slow_critic_rate) == (0.99, 0.06)
    assert (tiny.optim.model_lr, tiny.optim.actor_lr, tiny.optim.critic_lr) == (3e-4, 5e-5, 3e-4)
    # ... leave the reference presets at the reference values
    for name in ("1m", "xs", "s", "m", "l", "xl", "12m"):
        ref = dreamer_config(name)
        assert (ref.behavior.gamma, ref.behavior.slow_critic_rate, ref.train_ratio) == (0.997, 0.02, 512.0)
    assert (dreamer_config("s").optim.actor_lr, dreamer_config("s").optim.critic_lr) == (3e-5, 3e-5)
    assert set(PRESETS) >= {"1m", "xs", "s", "m", "l", "xl", "12m", "tiny"}


def test_larger_2023_sizes_match_sheeprl():
    # sheeprl 0.8.4 configs/algo/dreamer_v3_{M,L,XL}.yaml: recurrent_state_size, hidden_size,
    # dense_units, mlp_layers (every MLP), cnn_channels_multiplier
    sheeprl = {"m": (1024, 640, 640, 3, 48), "l": (2048, 768, 768, 4, 64), "xl": (4096, 1024, 1024, 5, 96)}
    for name, (deter, hidden, units, layers, cnn) in sheeprl.items():
        cfg = dreamer_config(name)
        m = cfg.model
        assert (m.deter, m.hidden, m.units, m.cnn_depth) == (deter, hidden, units, cnn)
        assert (m.stoch, m.classes) == (32, 32)
        assert (m.enc_layers, m.head_layers, m.ac_layers) == (layers, layers, layers)
        assert m.gru_blocks == 1 and cfg.loss.dyn == 0.5 and cfg.optim.name == "adam"


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="choose one of 1m, 12m, xs, s, m, l, xl, tiny"):
        dreamer_config("xxl")
