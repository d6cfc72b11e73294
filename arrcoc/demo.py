"""`arrcoc demo`: compress the shipped sample dialogue with the default model and show a heat map."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console

from arrcoc.compress import compress
from arrcoc.realizing import CompressionResult, heatmap_html, print_heatmap
from worldmodel.checkpoint import CheckpointError, atomic_write_text


def sample_dialogue() -> dict[str, Any]:
    """The shipped sample dialogue ``{"id", "messages"}`` (arrcoc/data/sample_dialogue.json)."""
    text = resources.files("arrcoc").joinpath("data/sample_dialogue.json").read_text(encoding="utf-8")
    return json.loads(text)


def run_demo(
    output: str | Path = "arrcoc-demo.html",
    budget: float = 0.3,
    model: Any = None,
    method: str = "fast",
    console: Console | None = None,
) -> tuple[CompressionResult, Path]:
    """Compress the sample dialogue (digits forced), print the terminal heat map, write the HTML one."""
    console = console or Console()
    dialogue = sample_dialogue()
    console.print(f"[bold]arrcoc demo[/bold]: compressing the sample dialogue to {budget:g} of its words ...")
    try:
        result = compress(
            dialogue["messages"],
            budget=budget,
            model=model,
            method=method,
            force_digits=True,
            dialogue_id=dialogue["id"],
        )
    except CheckpointError as err:
        if model is not None:
            raise
        raise CheckpointError(
            f"{err}. The default model is built by scripts/train_default_dialogue_model.sh; "
            "or pass --model DIR (a saved DialogueWorldModel)"
        ) from None
    print_heatmap(result, console)
    weights = ", ".join(f"{k} {v:.2f}" for k, v in result.weights.items())
    console.print(f"balancer weights: {weights}")
    path = atomic_write_text(output, heatmap_html(result, f"arrcoc relevance heat map: {dialogue['id']}"))
    console.print(f"HTML heat map written to [bold]{Path(path).resolve()}[/bold]")
    return result, Path(path)
