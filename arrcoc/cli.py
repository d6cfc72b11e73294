"""The `arrcoc` command line: dialogue world models and relevance allocation."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from worldmodel.cli import make_app

app = make_app("arrcoc", "Dialogue world models and ARR-COC token relevance allocation.")


METHOD_HELP = (
    "Future coupling form: fast (gradient x input), exact, reuse (a learned head in DIR/reuse) "
    "or hybrid (reuse and fast mixed)."
)


SHARE_HELP = (
    "Share of every budget for the method's reserved ranking (hybrid: the reuse head's), in [0, 1]; "
    "default: the method's tuned share."
)
RECENT_HELP = "Share of every budget for the most recent words, in [0, 1]; default: the method's tuned share."
TENSION_HELP = (
    "Balancer dial NAME=VALUE in [0, 1] (repeatable): compress_particularize, exploit_explore, "
    "focus_diversify; unnamed dials keep the method's tuned values."
)


def parse_tensions(method: str, items: list[str]):
    """``["compress_particularize=0.3", ...]`` applied on top of the method's tuned `Tensions`."""
    import dataclasses

    from arrcoc.balancing import TENSIONS
    from arrcoc.compress import tensions_for

    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in TENSIONS:
            raise ValueError(
                f"--tension takes NAME=VALUE with NAME one of {', '.join(TENSIONS)}; got {item!r}"
            )
        try:
            values[name] = float(value)
        except ValueError:
            raise ValueError(f"--tension {name}: {value!r} is not a number") from None
    return dataclasses.replace(tensions_for(method), **values)


def _run_file(
    input: Path,
    output: Path,
    allocation,
    model: str | None,
    method: str,
    max_words: int,
    tension: list[str],
    reserved_share: float | None = None,
    recent_share: float | None = None,
) -> None:
    """Shared body of `compress` and `score`: report bad lines, exit 1 if any failed, 2 if none could run."""
    from arrcoc.compress import balancer_for, compress_file

    try:
        balancer = balancer_for(method, parse_tensions(method, tension), reserved_share, recent_share)
        written, errors = compress_file(
            input,
            output,
            allocation,
            model,
            method=method,
            balancer=balancer,
            max_words=max_words,
            on_error=lambda message: typer.echo(message, err=True),
        )
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {written} dialogue(s) to {output}; {len(errors)} failed", err=True)
    if errors:
        raise typer.Exit(1)


@app.command()
def compress(
    input: Path = typer.Argument(..., help="JSONL ({id, messages}) or ShareGPT JSON file."),
    budget: float = typer.Option(
        ..., "--budget", "-b", help="Below 1: ratio of the words; 1 or more: words."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Output JSONL."),
    model: str | None = typer.Option(None, "--model", help="Model directory (default: the shipped model)."),
    method: str = typer.Option("fast", help=METHOD_HELP),
    tension: list[str] = typer.Option([], help=TENSION_HELP),
    reserved_share: float | None = typer.Option(None, help=SHARE_HELP),
    recent_share: float | None = typer.Option(None, help=RECENT_HELP),
    force_digits: bool = typer.Option(False, help="Always keep words with digits (not counted)."),
    force_term: list[str] = typer.Option([], help="Always keep this word (repeatable; not counted)."),
    min_per_turn: int = typer.Option(0, help="Words every message keeps at least."),
    max_per_turn: float | None = typer.Option(None, help="Cap per message: words, or a fraction if < 1."),
    curve: str = typer.Option("flat", help="Cap growth oldest->newest: flat, linear, power, exponential."),
    levels: str | None = typer.Option(None, help="Levels of detail per message, e.g. 0,0.25,0.5,1."),
    max_words: int = typer.Option(16384, help="Reject dialogues with more words than this."),
) -> None:
    """Keep the most relevant words of each dialogue within the budget (exactly)."""
    from arrcoc.attending import AllocationConfig

    try:
        allocation = AllocationConfig(
            budget=budget,
            min_per_turn=min_per_turn,
            max_per_turn=max_per_turn,
            curve=curve,
            levels=None if levels is None else tuple(float(x) for x in levels.split(",")),
            force_digits=force_digits,
            force_terms=tuple(force_term),
        )
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    _run_file(input, output, allocation, model, method, max_words, tension, reserved_share, recent_share)


@app.command()
def score(
    input: Path = typer.Argument(..., help="JSONL ({id, messages}) or ShareGPT JSON file."),
    output: Path = typer.Option(..., "--output", "-o", help="Output JSONL."),
    model: str | None = typer.Option(None, "--model", help="Model directory (default: the shipped model)."),
    method: str = typer.Option("fast", help=METHOD_HELP),
    tension: list[str] = typer.Option([], help=TENSION_HELP),
    reserved_share: float | None = typer.Option(None, help=SHARE_HELP),
    recent_share: float | None = typer.Option(None, help=RECENT_HELP),
    max_words: int = typer.Option(16384, help="Reject dialogues with more words than this."),
) -> None:
    """Score every word with every scorer (nothing dropped)."""
    _run_file(input, output, None, model, method, max_words, tension, reserved_share, recent_share)


@app.command()
def demo(
    output: Path = typer.Option(Path("arrcoc-demo.html"), "--output", "-o", help="HTML heat map path."),
    budget: float = typer.Option(0.3, "--budget", "-b", help="Below 1: ratio of the words; else words."),
    model: str | None = typer.Option(None, "--model", help="Model directory (default: the shipped model)."),
) -> None:
    """Compress the shipped sample dialogue; print a relevance heat map and write an HTML one."""
    from arrcoc.demo import run_demo

    try:
        run_demo(output, budget, model)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


@app.command("train-reuse")
def train_reuse_cmd(
    input: Path = typer.Argument(..., help="JSONL ({id, messages}) or ShareGPT JSON training dialogues."),
    model: str | None = typer.Option(None, "--model", help="Model directory (default: the shipped model)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Head directory (default: MODEL/reuse)."),
    cuts: int = typer.Option(1, help="Seeded cuts (training examples) per dialogue."),
    span: int = typer.Option(3, help="Future messages whose words count as reused."),
    epochs: int = typer.Option(8, help="Passes over the training words."),
    seed: int = typer.Option(0, help="Seed of the cuts and the head's initialisation."),
) -> None:
    """Train the future-reuse head that `--method reuse` uses (see docs/arrcoc.md)."""
    from arrcoc.compress import read_dialogues
    from arrcoc.future_reuse import ReuseConfig, dialogue_cuts, train_reuse
    from arrcoc.knowing import REUSE_DIR, WorldModelScorer, resolve_model

    try:
        if output is None and model is None:
            raise ValueError("pass --model DIR (the head goes to DIR/reuse) or --output DIR")
        scorer = resolve_model(model)
        if not isinstance(scorer, WorldModelScorer):
            raise ValueError("the reuse head needs a DialogueWorldModel directory")
        examples = []
        for k, item in enumerate(read_dialogues(input)):
            if item.error is not None:  # reported, not silently dropped; the rest still train
                typer.echo(f"{input.name}:{item.line}: skipped: {item.error}", err=True)
                continue
            examples += dialogue_cuts(item.messages, span, cuts, seed=seed + k)
        config = ReuseConfig(dim=scorer.model.encoder.dim, span=span)
        head, stats = train_reuse(scorer, examples, config, epochs=epochs, seed=seed)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    target = output or Path(model) / REUSE_DIR
    head.save_pretrained(target)
    if output is None:
        scorer.reuse = head  # the process-wide scorer of MODEL now has its head
    typer.echo(json.dumps({"saved": str(target), **stats}))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    data: str = typer.Option(..., "--data", help="File, directory, 'sharegpt', 'chatterbot' or hub name."),
    output: Path = typer.Option(..., "--output", "-o", help="Run directory (resumed from its checkpoint)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Optimiser steps (default: epochs)."),
) -> None:
    """Train a dialogue world model; extra `key=value` arguments override the config."""
    from dialogue.train import train_from_cli

    try:
        train_from_cli(data, str(output), max_steps, list(ctx.args))
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
