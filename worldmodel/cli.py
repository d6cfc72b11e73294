"""The `worldmodel` command line: control world models (train, eval, afford)."""

from __future__ import annotations

import typer

from worldmodel.run import package_version

app = typer.Typer(
    name="worldmodel",
    help="Train and evaluate DreamerV3-class agents on control benchmarks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Run `--help` on any subcommand for its options."""


@app.command()
def version() -> None:
    """Print the installed arrcoc version."""
    typer.echo(package_version())


if __name__ == "__main__":
    app()
