"""Dialogues -> RSSM steps ("exchanges").

Step t holds the user turn u_t (the observation) and the assistant response a_t that
follows it (the action taken after observing u_t; None when the dialogue ends on u_t).
In the replay convention of `worldmodel` the action row t is a_{t-1}, zeros at t = 0.

Normalisation rules: system turns are not steps (the encoder sees only user and
assistant turns); assistant turns before the first user turn are dropped; consecutive
turns of one role are joined with a blank line into one turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Exchange = tuple[str, str | None]


def exchanges(turns: Sequence[Mapping[str, Any]]) -> list[Exchange]:
    """``[{"role", "text"}, ...]`` -> ``[(user_text, assistant_text | None), ...]``."""
    merged: list[list[str]] = []  # [role, text]
    for turn in turns:
        role = turn["role"]
        if role == "system" or (role == "assistant" and not merged):
            continue
        if merged and merged[-1][0] == role:
            merged[-1][1] += "\n\n" + turn["text"]
        else:
            merged.append([role, turn["text"]])
    steps: list[Exchange] = []
    for i in range(0, len(merged), 2):
        reply = merged[i + 1][1] if i + 1 < len(merged) else None
        steps.append((merged[i][1], reply))
    return steps


def windows(steps: list[Exchange], max_steps: int) -> list[list[Exchange]]:
    """Split a long step list into consecutive windows of at most ``max_steps`` steps."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    return [steps[i : i + max_steps] for i in range(0, len(steps), max_steps)]
