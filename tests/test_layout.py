"""The package's shape stays what the README and docs/architecture.md say it is.

- The README's package map lists exactly the modules in the tree.
- Imports flow one way: the trainer never imports the orchestrator; the orchestrator reads
  of the trainer only its torch-free config and rules; analysis and ingest never import
  launch; the store imports none of launch, analysis, ingest or cli.
- No module grows past the size a reader can hold (about 450 lines; 480 at most).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jepardy"
ORCHESTRATOR = ("spec", "store", "launch", "analysis", "ingest", "cli")
# The trainer's modules the orchestrator may import: they import nothing heavy (no torch).
TORCH_FREE = ("jepardy.trainer.config", "jepardy.trainer.rules")
MAX_LINES = 480


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package but the __init__ files."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every jepardy module `path` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jepardy"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("jepardy"))
    return names


def _in(name: str, *packages: str) -> bool:
    return any(name == f"jepardy.{p}" or name.startswith(f"jepardy.{p}.") for p in packages)


def test_the_readme_maps_every_module_and_only_those() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Package map", 1)[1].split("\n## ", 1)[0]
    mapped = set(re.findall(r"^\| `(jepardy/[\w/]+\.py)` \|", section, re.MULTILINE))
    on_disk = {path.relative_to(ROOT).as_posix() for path in _modules().values()}
    assert sorted(on_disk - mapped) == [], "modules missing from the README's package map"
    assert sorted(mapped - on_disk) == [], "the README maps modules that do not exist"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_imports_flow_one_way(name: str) -> None:
    imported = _imports(_modules()[name])
    if _in(name, "trainer", "data"):
        assert not [i for i in imported if _in(i, *ORCHESTRATOR)], "trainer imports orchestrator"
    if _in(name, *ORCHESTRATOR):
        trainer = {i for i in imported if _in(i, "trainer")}
        assert not [
            i for i in trainer if not any(i == m or i.startswith(f"{m}.") for m in TORCH_FREE)
        ], "the orchestrator reads only the trainer's torch-free config and rules"
    if _in(name, "analysis", "ingest"):
        assert not [i for i in imported if _in(i, "launch", "cli")]
    if _in(name, "store"):
        assert not [i for i in imported if _in(i, "launch", "analysis", "ingest", "cli")]
    if _in(name, "spec"):
        assert not [i for i in imported if _in(i, "store", "launch", "analysis", "ingest", "cli")]


@pytest.mark.parametrize("name", TORCH_FREE)
def test_the_trainer_config_is_torch_free(name: str) -> None:
    code = f"import sys, {name}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_stay_small(name: str) -> None:
    lines = len(_modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines"
