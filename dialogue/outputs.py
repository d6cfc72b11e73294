"""Output dataclasses of the dialogue world model."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

State = dict[str, Tensor]


@dataclass
class DialogueState:
    """The latent state after a dialogue prefix, for N dialogues.

    Attributes:
        latent: RSSM state, ``deter [N, D]``, ``stoch``/``logits`` ``[N, S, C]``.
        awaiting: ``"assistant"`` when the prefix ends on a user turn, ``"user"`` when it
            ends on an assistant response (the latent is then the prior after that response).
        num_steps: number of exchanges observed.
        last_user, last_assistant: ``[N, E]`` embeddings of the last user turn and of the
            response to it (None when there is none); the skip path of the next-user head
            (``config.next_user_skip``) reads them.
    """

    latent: State
    awaiting: str
    num_steps: int
    last_user: Tensor | None = None
    last_assistant: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.latent["deter"].shape[0])


@dataclass
class ImaginedTrajectory:
    """Imagined future turns from `DialogueWorldModel.simulate_future_turns` (N rollouts, H turns).

    Attributes:
        responses: ``[N, H, E]`` the assistant response embeddings taken (index 0 is the
            proposed response; later ones come from the response head).
        next_user: ``[N, H, E]`` predicted embedding of the user turn after each response.
        quality: name -> ``[N, H]`` predicted relevance, engagement, coherence, task_success.
        rewards: ``[N, H]`` weighted quality (engagement, coherence, task_success).
        values: ``[N, H]`` predicted discounted future reward after each response.
        immediate: ``[N]`` reward of the first (proposed) response.
        discounted_total: ``[N]`` ``sum_k gamma^k r_k + gamma^(H-1) v_(H-1)``.
        states: RSSM states ``[N, H+1, ...]`` (index 0 is the start).
        user_texts: decoded user turns per rollout when requested, else empty.
    """

    responses: Tensor
    next_user: Tensor
    quality: dict[str, Tensor]
    rewards: Tensor
    values: Tensor
    immediate: Tensor
    discounted_total: Tensor
    states: State
    user_texts: list[list[str]] = field(default_factory=list)

    @property
    def future(self) -> Tensor:
        """``[N]`` the discounted future part: ``discounted_total - immediate``."""
        return self.discounted_total - self.immediate


@dataclass
class TurnSurprisal:
    """Per-token surprisal (nats) of one turn under the decoder, given the latent before it.

    ``offsets[j]`` is the character span of token j in ``text``; ``<eos>`` is not included.
    """

    role: str
    text: str
    tokens: list[str]
    offsets: list[tuple[int, int]]
    surprisal: Tensor  # [L]
    truncated: bool


@dataclass
class DialogueLosses:
    """The training loss (scalar) and detached metrics."""

    loss: Tensor
    metrics: dict[str, Tensor]
