"""A small byte-level BPE vocabulary for the turn decoder (trained with `tokenizers`).

Keeping the decoder vocabulary small (a few thousand pieces instead of the encoder's 30k)
keeps the output layer, and so the shipped checkpoint, small.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)
PAD_ID, EOS_ID = 0, 1


def train_bpe(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE on ``texts``. Ids 0, 1, 2 are ``<pad>``, ``<eos>``, ``<unk>``.

    ``encode`` appends ``<eos>``; ``decode`` skips it.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", special_tokens=[(EOS, EOS_ID)]
    )
    return tokenizer


def encode_turns(tokenizer: Tokenizer, texts: list[str], max_tokens: int) -> list[list[int]]:
    """Token ids of each text (``<eos>`` last), cut to ``max_tokens`` ids keeping ``<eos>``."""
    out = []
    for enc in tokenizer.encode_batch(texts):
        ids = enc.ids if enc.ids and enc.ids[-1] == EOS_ID else [*enc.ids, EOS_ID]
        out.append(ids if len(ids) <= max_tokens else ids[: max_tokens - 1] + [EOS_ID])
    return out
