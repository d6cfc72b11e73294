"""The `worldmodel` command line: control world models (train, eval, afford)."""

from __future__ import annotations

import typer

from worldmodel.run import package_version


def make_app(name: str, help: str) -> typer.Typer:
    """A command group with the conventions of both CLIs (`worldmodel`, `arrcoc`) and a `version` command."""
    group = typer.Typer(
        name=name, help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )

    @group.callback()
    def main() -> None:
        """Run `--help` on any subcommand for its options."""

    @group.command()
    def version() -> None:
        """Print the installed arrcoc version."""
        typer.echo(package_version())

    return group


app = make_app("worldmodel", "Train and evaluate DreamerV3-class agents on control benchmarks.")


@app.command()
def train(
    env: str = typer.Option("gym:CartPole-v1", help="suite:task, e.g. gym:CartPole-v1, dmc:walker-walk"),
    size: str = typer.Option("xs", help="agent size preset (worldmodel.presets)"),
    steps: int = typer.Option(10_000, help="total env steps"),
    train_ratio: float = typer.Option(None, help="replayed steps per env step (default: preset's)"),
    logdir: str = typer.Option(..., help="run directory; an existing one is resumed"),
    seed: int = typer.Option(0),
    overrides: list[str] = typer.Argument(None, help="key=value agent overrides, run.key=value run settings"),
) -> None:
    """Train a Dreamer agent on a control task (resumes an existing logdir)."""
    import json

    from worldmodel.train import build_configs
    from worldmodel.train import train as run_training

    try:
        run_cfg, agent_cfg = build_configs(
            overrides or [], env=env, size=size, steps=steps, seed=seed, train_ratio=train_ratio
        )
        result = run_training(run_cfg, agent_cfg, logdir)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result))


@app.command("eval")
def evaluate(
    logdir: str = typer.Option(..., help="run directory written by `worldmodel train`"),
    episodes: int = typer.Option(10),
    video: str = typer.Option(None, help="write an MP4 of the episodes (image observations)"),
    planner: str = typer.Option(
        "policy", help="how to act: policy (the learned actor), or plan with shooting, cem, mppi, mcts"
    ),
    planner_opt: list[str] = typer.Option(
        None, "--planner-opt", help="planner setting key=value, repeatable (e.g. horizon=12)"
    ),
    checkpoint: str = typer.Option(
        None, help="a saved copy of an earlier checkpoint of this run (default: the latest)"
    ),
) -> None:
    """Evaluate a run's latest checkpoint; prints one JSON line with mean/std return."""
    import json

    from worldmodel.evaluate import evaluate as run_eval

    try:
        options = planner_opt or []
        result = run_eval(
            logdir, episodes=episodes, video=video, planner=planner, planner_options=options,
            checkpoint=checkpoint,
        )
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result))


@app.command()
def afford(
    logdir: str = typer.Option(..., help="run directory written by `worldmodel train`"),
    states: int = typer.Option(5, help="how many latent states of the episode to show"),
    every: int = typer.Option(10, help="show every k-th state of the episode"),
    epistemic_weight: float = typer.Option(0.0, help="weight of the epistemic value in the ranking"),
    samples: int = typer.Option(4, help="imagined outcomes averaged per action"),
) -> None:
    """Print ranked affordances (expected free energy) for states of a greedy episode."""
    from worldmodel.affordances import AffordanceConfig, affordances_of_episode

    try:
        cfg = AffordanceConfig(epistemic_weight=epistemic_weight, samples=samples)
        rows = affordances_of_episode(logdir, states=states, every=every, config=cfg)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    for row in rows:
        typer.echo(f"step {row['step']}  (policy took {row['taken']})")
        for rank, aff in enumerate(row["affordances"], 1):
            typer.echo(
                f"  {rank}. action {aff['action']}  score {aff['score']:.3f}  total {aff['total']:.3f}  "
                f"reward {aff['reward']:.3f}  cont {aff['cont']:.3f}  value {aff['value']:.3f}  "
                f"epistemic {aff['epistemic']:.3f}"
            )


if __name__ == "__main__":
    app()
