"""The distribution's shape: import direction, CLIs, and module sizes."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = {"worldmodel": 0, "dialogue": 1, "arrcoc": 2}


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_point_one_way():
    bad = []
    for package, level in LAYERS.items():
        for path in (ROOT / package).rglob("*.py"):
            for name in _imports(path) & LAYERS.keys():
                if LAYERS[name] > level:
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "imports must point arrcoc -> dialogue -> worldmodel: " + "; ".join(bad)


def test_clis_list_their_subcommands():
    for cli in ("arrcoc", "worldmodel"):
        out = subprocess.run(
            [sys.executable, "-m", f"{cli}.cli", "--help"], capture_output=True, text=True, check=True
        ).stdout
        assert "Commands" in out and "version" in out


def test_worldmodel_cli_rejects_an_unknown_config_key(tmp_path):
    from typer.testing import CliRunner

    from worldmodel.cli import app

    result = CliRunner().invoke(
        app, ["train", "--env", "gym:CartPole-v1", "--logdir", str(tmp_path / "run"), "model.detr=3"]
    )
    assert result.exit_code == 2
    assert "unknown config key 'model.detr'" in result.output and "model.deter" in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()
