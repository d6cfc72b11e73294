"""DialogueWorldModel: a Hugging Face turn encoder + the worldmodel RSSM over turns.

Step t of a dialogue observes the user turn u_t (its encoder embedding, projected to
``embed_dim``); the action is the assistant response (its embedding, projected to
``action_dim`` and squashed to [-1, 1]). Heads on the latent features ``[.., F]``:

- ``user_head``: the user turn's embedding, from the prior (prediction before seeing
  it: trained with cosine + in-batch InfoNCE) and from the posterior (reconstruction);
  with ``config.next_user_skip`` it is residual on the previous user turn and response
  (see `DialogueWorldModel.user_prediction`);
- ``response_head``: the assistant response's embedding (the policy used in imagination);
- ``decoder``: a small transformer decoding turn text (user turns from the prior,
  assistant turns from the posterior); its per-token surprisal is exposed;
- ``quality_head``: relevance, engagement, coherence, task_success of a response, and
  ``value_head``: the discounted future reward, both on the prior state after the response.

Label proxies are documented in `dialogue.labels`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dialogue.batching import embed_turns
from dialogue.bpe import encode_turns
from dialogue.config import DialogueConfig
from dialogue.data.formats import MalformedRecord, normalise_record
from dialogue.data.tokenize import LengthLimitWarning
from dialogue.decoder import ROLE_IDS, TurnDecoder
from dialogue.encoder import TurnEncoder
from dialogue.labels import QUALITY_NAMES
from dialogue.losses import world_model_losses
from dialogue.outputs import DialogueLosses, DialogueState, ImaginedTrajectory, TurnSurprisal
from dialogue.steps import Exchange, exchanges
from worldmodel.nets import MLP
from worldmodel.rssm import RSSM


class DialogueInputError(ValueError):
    """A dialogue given to the model is empty or malformed."""


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's CPU RNG seeded (and restored afterwards); None: unchanged."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield


class DialogueWorldModel(nn.Module):
    """World model of conversations. See the module docstring.

    Args:
        config: `DialogueConfig` (``config.decoder.vocab_size`` must match ``tokenizer``).
        tokenizer: the decoder's BPE (`tokenizers.Tokenizer`), needed for text in/out.
        encoder: a `TurnEncoder`; built from ``config.encoder`` when None.
    """

    def __init__(
        self, config: DialogueConfig, tokenizer: Any = None, encoder: TurnEncoder | None = None
    ):
        super().__init__()
        self.config, self.tokenizer = config, tokenizer
        self.encoder = encoder or TurnEncoder(
            config.encoder.name, config.encoder.trainable, config.encoder.max_length
        )
        if tokenizer is not None and tokenizer.get_vocab_size() != config.decoder.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.get_vocab_size()} pieces but decoder.vocab_size="
                f"{config.decoder.vocab_size}"
            )
        emb, c = self.encoder.dim, config
        self.obs_proj = MLP(emb, None, c.embed_dim, 1)
        self.act_proj = nn.Sequential(nn.Linear(emb, c.action_dim), nn.Tanh())
        self.rssm = RSSM(
            c.embed_dim, c.action_dim, c.deter, c.stoch, c.classes, c.hidden, c.unimix, c.gru_blocks
        )
        feat = self.rssm.feat_dim
        self.user_head = MLP(feat, emb, c.hidden, 1, zero_out=c.next_user_skip)
        self.user_skip: nn.Linear | None = None
        if c.next_user_skip:  # starts as a copy of the previous user turn
            self.user_skip = nn.Linear(2 * emb, emb, bias=False)
            with torch.no_grad():
                self.user_skip.weight.zero_()
                self.user_skip.weight[:, :emb].copy_(torch.eye(emb))
        self.response_head = MLP(feat, emb, c.hidden, 1)
        self.quality_head = MLP(feat, len(QUALITY_NAMES), c.hidden, 1)
        self.value_head = MLP(feat, 1, c.hidden, 1, zero_out=True)
        d = c.decoder
        self.decoder = TurnDecoder(feat, d.vocab_size, d.dim, d.layers, d.heads, d.max_tokens)

    # ------------------------------------------------------------------ training
    def forward(self, batch: Mapping[str, Tensor]) -> DialogueLosses:
        """Training losses (`dialogue.losses.world_model_losses`). Word pieces in the batch
        (`dialogue.batching.make_batch`) are re-embedded first, so a trainable encoder learns."""
        if "turn_input_ids" in batch:
            batch = {**batch, **embed_turns(self.encoder, batch)}
        return world_model_losses(self, batch)

    def user_prediction(self, feat: Tensor, prev_user: Tensor, prev_assistant: Tensor) -> Tensor:
        """L2-normalised user-turn embedding ``[..., E]`` from latent features ``[..., F]``.

        ``prev_user``, ``prev_assistant`` ``[..., E]``: the previous user turn and the response
        to it (zeros when absent). Without ``config.next_user_skip`` they are ignored and the
        prediction is ``normalize(user_head(feat))``; with it, the head is residual:
        ``normalize(W [u_prev; a_prev] + user_head(feat))``, which at initialisation equals
        the previous user turn (W copies it, ``user_head`` outputs zeros).
        """
        out = self.user_head(feat)
        if self.user_skip is not None:
            out = out + self.user_skip(torch.cat([prev_user, prev_assistant], -1))
        return F.normalize(out, dim=-1)

    # ------------------------------------------------------------------ inputs
    def parse_messages(self, messages: Sequence[Mapping[str, Any]]) -> list[Exchange]:
        """Validate ``[{"role", "content"}, ...]`` and return its exchanges (`dialogue.steps`).

        Raises DialogueInputError for empty dialogues, non-string content, unknown roles or a
        dialogue without a user turn. Turns longer than the encoder's ``max_length`` are
        truncated with a `LengthLimitWarning`.
        """
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise DialogueInputError("messages must be a list of {'role', 'content'} dicts")
        try:
            record = normalise_record({"messages": list(messages)}, require_both_roles=False)
        except MalformedRecord as err:
            raise DialogueInputError(f"invalid dialogue: {err}") from None
        steps = exchanges(record["turns"])
        if not steps:
            raise DialogueInputError("invalid dialogue: it has no user turn")
        texts = [t for step in steps for t in step if t is not None]
        lengths = [len(ids) for ids in self.encoder.tokenizer(texts, verbose=False)["input_ids"]]
        long = sum(n > self.encoder.max_length for n in lengths)
        if long:
            warnings.warn(
                f"{long} turn(s) exceed the encoder's {self.encoder.max_length} word pieces; truncated",
                LengthLimitWarning,
                stacklevel=3,
            )
        return steps

    def embed_texts(self, texts: Sequence[str]) -> Tensor:
        """Encoder embeddings ``[N, E]`` (no gradient unless the encoder is trainable)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.encoder.trainable):
            return self.encoder(list(texts))

    # ------------------------------------------------------------------ latent states
    def latent_from_embeddings(
        self,
        user_emb: Tensor,
        assistant_emb: Tensor,
        has_response: Tensor | None = None,
        seed: int | None = 0,
    ) -> DialogueState:
        """Differentiable filtering over precomputed turn embeddings.

        Args:
            user_emb, assistant_emb: ``[N, T, E]`` (row t: user turn t and the response to it).
            has_response: ``[N]`` bool, whether the last step's response exists (default: no).
        Returns:
            the state after step T-1 (and after its response, for rows with one). A mixed
            batch is not allowed: ``has_response`` must be all true or all false. The latent
            samples are drawn under ``seed`` (None: the global RNG), so encoding is repeatable.
        """
        with seeded(seed):
            return self._filter(user_emb, assistant_emb, has_response)

    def _filter(
        self, user_emb: Tensor, assistant_emb: Tensor, has_response: Tensor | None
    ) -> DialogueState:
        n, steps = user_emb.shape[:2]
        action = self.act_proj(assistant_emb)
        prev = torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)
        is_first = torch.zeros(n, steps, dtype=torch.bool, device=user_emb.device)
        is_first[:, 0] = True
        post, _ = self.rssm.observe(self.obs_proj(user_emb), prev, is_first)
        last = {k: v[:, -1] for k, v in post.items()}
        responded = bool(has_response.all()) if has_response is not None else False
        if has_response is not None and bool(has_response.any()) != responded:
            raise ValueError("has_response must be all true or all false within one batch")
        if responded:
            latent = self.rssm.img_step(last, action[:, -1])
            return DialogueState(latent, "user", steps, user_emb[:, -1], assistant_emb[:, -1])
        return DialogueState(last, "assistant", steps, user_emb[:, -1])

    def encode_dialogue(
        self, messages: Sequence[Mapping[str, Any]], seed: int | None = 0
    ) -> DialogueState:
        """``[{"role": ..., "content": ...}, ...]`` -> the latent `DialogueState` (N = 1).

        System turns are skipped; a dialogue ending on an assistant turn gives a state that
        awaits the user (``state.awaiting == "user"``).
        """
        steps = self.parse_messages(messages)
        users = self.embed_texts([u for u, _ in steps])
        replies = [a for _, a in steps]
        assistant = torch.zeros_like(users)
        known = [i for i, a in enumerate(replies) if a is not None]
        if known:
            assistant[known] = self.embed_texts([replies[i] for i in known])
        has_response = torch.tensor([replies[-1] is not None], device=users.device)
        return self.latent_from_embeddings(users[None], assistant[None], has_response, seed=seed)

    def _as_response_embedding(self, response: str | Tensor, n: int) -> Tensor:
        if isinstance(response, str):
            if not response.strip():
                raise DialogueInputError("the proposed response is an empty string")
            return self.embed_texts([response]).expand(n, -1)
        if not isinstance(response, Tensor) or response.shape[-1] != self.encoder.dim:
            raise DialogueInputError(
                f"the proposed response must be a string or an embedding [.., {self.encoder.dim}]"
            )
        return F.normalize(response.reshape(-1, self.encoder.dim), dim=-1).expand(n, -1)

    def simulate_future_turns(
        self,
        state: DialogueState,
        proposed_response: str | Tensor | None,
        num_turns: int = 3,
        seed: int | None = 0,
        decode: bool = False,
    ) -> ImaginedTrajectory:
        """Imagine ``num_turns`` future exchanges after ``proposed_response``.

        Args:
            state: from `encode_dialogue` / `latent_from_embeddings`; must await the assistant
                when a response is proposed.
            proposed_response: a string, an embedding ``[E]``/``[N, E]``, or None (the
                response head chooses every response).
            seed: seeds the latent sampling (same seed -> same trajectory); None uses the
                global RNG.
            decode: also decode the imagined user turns to text (greedy).
        Returns:
            `ImaginedTrajectory` with ``H = num_turns``. Differentiable w.r.t. the state and
            an embedding response (no ``no_grad`` inside).
        """
        if num_turns < 1:
            raise ValueError(f"num_turns must be >= 1, got {num_turns}")
        if proposed_response is not None and state.awaiting != "assistant":
            raise DialogueInputError(
                "the dialogue ends with an assistant turn: propose a response only after a user turn "
                "(or pass proposed_response=None to let the response head choose)"
            )
        n = state.batch_size
        first = (
            None if proposed_response is None else self._as_response_embedding(proposed_response, n)
        )
        responses: list[Tensor] = []

        def policy(feat: Tensor) -> Tensor:
            use_given = first is not None and not responses
            response = first if use_given else F.normalize(self.response_head(feat), dim=-1)
            responses.append(response)
            return self.act_proj(response)

        with seeded(seed):
            states, _ = self.rssm.imagine(state.latent, policy, num_turns)
        feat_next = self.rssm.feat({k: v[:, 1:] for k, v in states.items()})
        quality = torch.sigmoid(self.quality_head(feat_next))
        w = torch.tensor(self.config.reward_weights, device=quality.device)
        rewards = (quality[..., 1:] * w).sum(-1)
        values = self.value_head(feat_next).squeeze(-1)
        discount = self.config.gamma ** torch.arange(
            num_turns, device=rewards.device, dtype=rewards.dtype
        )
        total = (rewards * discount).sum(-1) + discount[-1] * values[:, -1]
        texts = self._decode(feat_next.reshape(-1, feat_next.shape[-1]), "user") if decode else []
        next_user = []  # each predicted user turn is the previous user turn of the next step
        prev_user = state.last_user if state.last_user is not None else torch.zeros_like(responses[0])
        for k, response in enumerate(responses):
            prev_user = self.user_prediction(feat_next[:, k], prev_user, response)
            next_user.append(prev_user)
        return ImaginedTrajectory(
            responses=torch.stack(responses, 1),
            next_user=torch.stack(next_user, 1),
            quality={name: quality[..., i] for i, name in enumerate(QUALITY_NAMES)},
            rewards=rewards,
            values=values,
            immediate=rewards[:, 0],
            discounted_total=total,
            states=states,
            user_texts=[texts[i : i + num_turns] for i in range(0, len(texts), num_turns)],
        )

    def predict_next_user(self, state: DialogueState) -> Tensor:
        """Predicted embedding ``[N, E]`` of the next user turn of a state awaiting the user."""
        if state.awaiting != "user":
            raise DialogueInputError("the state awaits an assistant response; simulate one first")
        feat = self.rssm.feat(state.latent)
        zeros = feat.new_zeros(len(feat), self.encoder.dim)
        prev_user = state.last_user if state.last_user is not None else zeros
        prev_assistant = state.last_assistant if state.last_assistant is not None else zeros
        return self.user_prediction(feat, prev_user, prev_assistant)

    # ------------------------------------------------------------------ text
    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise DialogueInputError(
                "this model has no decoder tokenizer (load it with from_pretrained)"
            )
        return self.tokenizer

    def _decode(self, cond: Tensor, role: str, **kwargs: Any) -> list[str]:
        tokenizer = self._require_tokenizer()
        roles = torch.full((len(cond),), ROLE_IDS[role], dtype=torch.long, device=cond.device)
        return [
            tokenizer.decode(ids).strip() for ids in self.decoder.generate(cond, roles, **kwargs)
        ]

    def generate_response(
        self,
        state: DialogueState,
        bank: Sequence[str] | None = None,
        bank_embeddings: Tensor | None = None,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> list[str]:
        """The next assistant response for each of the N states.

        With a ``bank`` of candidate responses (and optionally their embeddings ``[K, E]``):
        the candidate closest (cosine) to the response head's prediction. Without a bank:
        decoded from the latent (greedy when ``temperature == 0``).
        """
        if state.awaiting != "assistant":
            raise DialogueInputError("the dialogue ends with an assistant turn; it awaits the user")
        feat = self.rssm.feat(state.latent)
        if bank is not None:
            if not len(bank):
                raise DialogueInputError("the response bank is empty")
            cand = bank_embeddings if bank_embeddings is not None else self.embed_texts(list(bank))
            pred = F.normalize(self.response_head(feat), dim=-1)
            return [bank[int(i)] for i in (pred @ F.normalize(cand, dim=-1).T).argmax(-1)]
        generator = torch.Generator(device=feat.device).manual_seed(seed)
        return self._decode(feat, "assistant", temperature=temperature, generator=generator)

    @torch.no_grad()
    def turn_surprisal(
        self,
        messages: Sequence[Mapping[str, Any]],
        seed: int | None = 0,
        turn_embeddings: Tensor | None = None,
    ) -> list[TurnSurprisal]:
        """Per-token surprisal of every user and assistant turn given the latent before it.

        User turn t is scored from the prior at step t (before observing it), assistant turn
        t from the posterior at step t. Turns are cut to ``decoder.max_tokens - 1`` pieces.
        turn_embeddings: the turns already embedded, [T, H] in the order user, reply, user,
        ... (e.g. arrcoc's chunked pooling); None embeds them here.
        """
        tokenizer = self._require_tokenizer()
        steps = self.parse_messages(messages)
        replies = [a or "" for _, a in steps]
        if turn_embeddings is None:
            users = self.embed_texts([u for u, _ in steps])
            assistant = self.embed_texts(replies)
        else:
            users, assistant = turn_embeddings[0::2], turn_embeddings[1::2]
            if len(users) != len(steps):
                raise ValueError(f"{len(turn_embeddings)} turn embeddings for {len(steps)} user turns")
            assistant = torch.cat([assistant, torch.zeros_like(users[len(assistant) :])])
        assistant = assistant * torch.tensor([[bool(a)] for a in replies], device=users.device)
        action = self.act_proj(assistant)[None]
        prev = torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)
        is_first = torch.zeros(1, len(steps), dtype=torch.bool, device=users.device)
        is_first[:, 0] = True
        with seeded(seed):
            post, prior = self.rssm.observe(self.obs_proj(users[None]), prev, is_first)
        out: list[TurnSurprisal] = []
        limit = self.config.decoder.max_tokens
        for t, (user, reply) in enumerate(steps):
            for role, text, state in (("user", user, prior), ("assistant", reply, post)):
                if text is None:
                    continue
                ids = encode_turns(tokenizer, [text], limit)[0]
                enc = tokenizer.encode(text)
                cond = self.rssm.feat({k: v[:, t] for k, v in state.items()})
                roles = torch.tensor([ROLE_IDS[role]], device=cond.device)
                surprisal = self.decoder.surprisal(
                    cond, roles, torch.tensor([ids], device=cond.device)
                )[0]
                n = len(ids) - 1  # without <eos>
                truncated = len(enc.ids) > len(ids)
                out.append(
                    TurnSurprisal(
                        role, text, enc.tokens[:n], enc.offsets[:n], surprisal[:n].cpu(), truncated
                    )
                )
        return out

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors`` and ``tokenizer.json`` to ``path``."""
        from dialogue.pretrained import save_pretrained

        return save_pretrained(self, path)

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, encoder: TurnEncoder | None = None, device: str = "cpu"
    ) -> DialogueWorldModel:
        """Load a saved model; ``path=None`` loads the shipped default (``dialogue/default``).

        Raises `EncoderMismatchError` when the encoder differs from the one it was trained with.
        """
        from dialogue.pretrained import load_pretrained

        return load_pretrained(path, encoder=encoder, device=device)
