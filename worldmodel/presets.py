"""DreamerConfig dataclasses and the size presets ``1m``, ``12m``, ``xs``, ``s``, ``m``, ``l``, ``xl``
(and ``tiny``).

Two families (see docs/worldmodel.md and ../shared/docs/dreamer-reference.md):

* Nature version (2025, danijar/dreamerv3 since April 2024): ``1m`` and ``12m`` --
  block GRU of 8 groups, 3-layer encoder/decoder and actor/critic, KL dyn 1.0 /
  rep 0.1, LaProp-style optimiser with adaptive gradient clipping, lr 4e-5.
* 2023 preprint (NM512/dreamerv3-torch, sheeprl): ``xs``, ``s``, ``m``, ``l``, ``xl`` -- LayerNorm
  GRU, KL dyn 0.5 / rep 0.1, Adam (model lr 1e-4, eps 1e-8, clip 1000; actor and
  critic lr 3e-5, eps 1e-5, clip 100).

``train_ratio`` is the number of *replayed steps per env step* (DreamerV3's own
unit). sheeprl's ``replay_ratio`` counts gradient steps per policy step, so
``replay_ratio = train_ratio / (batch_size * batch_length)`` (= train_ratio / 1024 at
16 x 64).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from worldmodel.config import ConfigError, resolve_config


@dataclass
class ModelConfig:
    """Network sizes of the world model and the actor-critic."""

    deter: int = 512
    stoch: int = 32
    classes: int = 32
    hidden: int = 512  # RSSM input/output layers
    units: int = 512  # MLP width of encoders, decoders and heads
    enc_layers: int = 2  # vector encoder and decoder MLP layers
    head_layers: int = 2  # reward and continue heads
    ac_layers: int = 2  # actor and critic
    cnn_depth: int = 32  # channels of the first conv; doubled per stride-2 layer
    gru_blocks: int = 1
    unimix: float = 0.01
    bins: int = 255


@dataclass
class LossConfig:
    """World-model loss scales (KL balancing with free bits)."""

    dyn: float = 0.5
    rep: float = 0.1
    free_nats: float = 1.0
    recon: float = 1.0
    reward: float = 1.0
    cont: float = 1.0


@dataclass
class BehaviorConfig:
    """Actor-critic learning in imagination."""

    horizon: int = 15
    horizon_start: int = 15  # curriculum: imagination horizon at update 0 ...
    horizon_ramp: int = 0  # ... growing linearly to `horizon` over this many updates (0 = off)
    gamma: float = 0.997  # 1 - 1/333
    lam: float = 0.95
    entropy: float = 3e-4
    actor_unimix: float = 0.01
    min_std: float = 0.1
    max_std: float = 1.0
    slow_critic_rate: float = 0.02
    slow_critic_reg: float = 1.0
    retnorm_rate: float = 0.01
    retnorm_limit: float = 1.0
    imag_starts: int = 0  # posterior states to imagine from per update (0 = all B*T)
    repval: float = 0.0  # critic loss on replayed lambda-returns (Nature 0.3; needs imag_starts=0)
    # How the actor learns: "reinforce" (score function, both action kinds, as the Nature version) or
    # "dynamics" (continuous actions only: the return's gradient backpropagated through the imagined
    # trajectory, the 2023 version's `actor_grad_cont: backprop`).
    actor_grad: str = "reinforce"


@dataclass
class OptimConfig:
    """Optimisers. ``name`` is ``adam`` (2023) or ``laprop`` (Nature)."""

    name: str = "adam"
    model_lr: float = 1e-4
    model_eps: float = 1e-8
    model_clip: float = 1000.0
    actor_lr: float = 3e-5
    actor_eps: float = 1e-5
    actor_clip: float = 100.0
    critic_lr: float = 3e-5
    critic_eps: float = 1e-5
    critic_clip: float = 100.0
    agc: float = 0.0  # adaptive gradient clipping ratio (0 = off; Nature 0.3)
    warmup: int = 0  # linear lr warm-up in updates


@dataclass
class DreamerConfig:
    """Everything an `Agent` needs; build with `dreamer_config(preset, overrides)`."""

    preset: str = "s"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    behavior: BehaviorConfig = field(default_factory=BehaviorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 16
    batch_length: int = 64
    train_ratio: float = 512.0  # replayed steps per env step
    compile: bool = False  # torch.compile the RSSM step and heads (off by default)
    # "bfloat16": the update's matmuls and convolutions run under bf16 autocast (AMX on recent x86
    # CPUs, tensor cores on GPUs); weights, optimiser states, the GRU state and every distribution
    # stay float32. Acting and planning run in float32.
    precision: str = "float32"
    seed: int = 0


_NATURE: dict[str, Any] = {
    "model": {"enc_layers": 3, "head_layers": 1, "ac_layers": 3, "gru_blocks": 8},
    "loss": {"dyn": 1.0, "rep": 0.1},
    "behavior": {"repval": 0.3},
    "optim": {
        "name": "laprop", "model_lr": 4e-5, "model_eps": 1e-20, "actor_lr": 4e-5, "actor_eps": 1e-20,
        "critic_lr": 4e-5, "critic_eps": 1e-20, "agc": 0.3, "warmup": 1000,
    },
}


def _layers(n: int) -> dict[str, int]:
    """The same depth for the encoder/decoder, head and actor/critic MLPs."""
    return {"enc_layers": n, "head_layers": n, "ac_layers": n}


PRESETS: dict[str, dict[str, Any]] = {
    "1m": {"model": {"deter": 512, "hidden": 64, "stoch": 32, "classes": 4, "units": 64, "cnn_depth": 8}},
    "12m": {
        "model": {"deter": 2048, "hidden": 256, "stoch": 32, "classes": 16, "units": 256, "cnn_depth": 16}
    },
    "xs": {"model": {"deter": 256, "hidden": 256, "units": 256, **_layers(1), "cnn_depth": 24}},
    "s": {"model": {"deter": 512, "hidden": 512, "units": 512, "cnn_depth": 32}},
    # The larger 2023 sizes, as sheeprl's dreamer_v3_{M,L,XL}: every MLP has `layers` layers.
    "m": {"model": {"deter": 1024, "hidden": 640, "units": 640, **_layers(3), "cnn_depth": 48}},
    "l": {"model": {"deter": 2048, "hidden": 768, "units": 768, **_layers(4), "cnn_depth": 64}},
    "xl": {"model": {"deter": 4096, "hidden": 1024, "units": 1024, **_layers(5), "cnn_depth": 96}},
    # The recommended CPU preset: xs shrunk to 128 units and 16 x 16 latents, 16 x 32 batches,
    # imagination from 256 of the 512 posterior states, train ratio 128 (one update per 4 env
    # steps: ~2,250 updates in 10k env steps, where sheeprl's CartPole run makes ~3,700 of 16 x 64).
    # With so few updates the critic is the bottleneck: at lr 1e-4, slow-critic rate 0.02 and
    # discount 0.997 its value reached 7 of ~250 after 10k CartPole steps, so the actor saw a
    # 15-step horizon and the greedy policy drifted off the track. Hence critic lr 3e-4, slow
    # critic rate 0.06, discount 0.99 (horizon 100) and a gentler actor lr 5e-5 (1e-4 with
    # twice the updates collapsed the policy after it first reached 500). See docs/control.md.
    "tiny": {
        "model": {"deter": 128, "hidden": 128, "units": 128, "stoch": 16, "classes": 16, **_layers(1),
                  "cnn_depth": 24},
        "behavior": {"imag_starts": 256, "gamma": 0.99, "slow_critic_rate": 0.06},
        "optim": {"model_lr": 3e-4, "actor_lr": 5e-5, "critic_lr": 3e-4},
        "batch_size": 16, "batch_length": 32, "train_ratio": 128.0,
    },
}
for _name in ("1m", "12m"):
    PRESETS[_name] = {
        k: {**_NATURE.get(k, {}), **PRESETS[_name].get(k, {})} for k in {*_NATURE, *PRESETS[_name]}
    }


def updates_per_env_step(config: DreamerConfig) -> float:
    """Gradient updates per env step for ``config.train_ratio`` (replayed steps per env step).

    This is sheeprl's ``replay_ratio``: ``train_ratio / (batch_size * batch_length)``.
    """
    return config.train_ratio / (config.batch_size * config.batch_length)


def dreamer_config(preset: str = "s", overrides: Sequence[str] = ()) -> DreamerConfig:
    """A `DreamerConfig` from a size preset plus ``key=value`` overrides.

    >>> dreamer_config("xs", ["behavior.horizon=10"]).model.deter
    256
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    return resolve_config(DreamerConfig, overrides, preset={**PRESETS[preset], "preset": preset})
