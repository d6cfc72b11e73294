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
    for name in ("1m", "xs", "s", "12m"):
        ref = dreamer_config(name)
        assert (ref.behavior.gamma, ref.behavior.slow_critic_rate, ref.train_ratio) == (0.997, 0.02, 512.0)
    assert (dreamer_config("s").optim.actor_lr, dreamer_config("s").optim.critic_lr) == (3e-5, 3e-5)
    assert set(PRESETS) >= {"1m", "xs", "s", "12m", "tiny"}


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="choose one of 1m, 12m, xs, s, tiny"):
        dreamer_config("xl")
