"""The package's shape stays what the README and docs/architecture.md say it is.

- The README's package map lists exactly the modules in the tree.
- Imports flow one way: the trainer never imports the orchestrator; the orchestrator reads
  of the trainer only its torch-free config and rules; analysis and ingest never import
  launch; the store imports none of launch, analysis, ingest or cli.
- No module grows past the size a reader can hold (about 450 lines; 480 at most).
- No function grows past 60 lines (from its `def` line to its last line), unless a comment
  says why it must be one piece: a comment holding the words "one piece", in the comment
  lines right above the function (or its decorators) or in its own first lines, e.g.
  `# One piece on purpose: a single pass whose state every rule reads and updates.`
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jepardy"
ORCHESTRATOR = ("spec", "store", "launch", "analysis", "ingest", "cli")
# The trainer's modules the orchestrator may import: they import nothing heavy (no torch).
TORCH_FREE = ("jepardy.trainer.config", "jepardy.trainer.rules")
MAX_LINES = 480
MAX_FUNCTION_LINES = 60
# The marker a longer function needs in a comment (case ignored), and where it may stand:
# the comment lines right above the def or its decorators, or the function's first lines.
ONE_PIECE = "one piece"
MARKER_LINES = 5


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


def _says_one_piece(
    comments: dict[int, str], lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef
) -> bool:
    """Whether a comment right above the function (or its decorators), or one in its first
    MARKER_LINES lines, holds ONE_PIECE. `comments`: 1-based line -> its comment."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    above = first - 1
    while above in comments and lines[above - 1].lstrip().startswith("#"):
        above -= 1
    near = [*range(above + 1, first), *range(node.lineno, node.lineno + MARKER_LINES)]
    return any(ONE_PIECE in comments.get(n, "").lower() for n in near)


def _long_functions(path: Path) -> list[str]:
    """`name (N lines)` for each function of `path` over MAX_FUNCTION_LINES without the
    ONE_PIECE comment."""
    text = path.read_text()
    lines = text.splitlines()
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    comments = {tok.start[0]: tok.string for tok in tokens if tok.type == tokenize.COMMENT}
    found = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length > MAX_FUNCTION_LINES and not _says_one_piece(comments, lines, node):
            found.append(f"{node.name} ({length} lines)")
    return found


@pytest.mark.parametrize("name", sorted(_modules()))
def test_functions_stay_short_or_say_why(name: str) -> None:
    long = _long_functions(_modules()[name])
    assert long == [], f"{name}: over {MAX_FUNCTION_LINES} lines without a {ONE_PIECE!r} comment"


def test_the_function_rule_sees_a_long_function_and_its_marker(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    module = tmp_path / "module.py"
    module.write_text(f"def long():\n{body}\n\ndef short():\n    return 1\n")
    assert _long_functions(module) == [f"long ({MAX_FUNCTION_LINES + 1} lines)"]
    marked = "# One piece on purpose: a single pass.\n@staticmethod\ndef long():\n" + body
    module.write_text(marked)
    assert _long_functions(module) == []
    module.write_text(f"def long():\n    # one piece: one state machine\n{body}")
    assert _long_functions(module) == []
    module.write_text(f"def long():\n    text = '# one piece'\n{body}")
    assert _long_functions(module) == ["long (62 lines)"]
