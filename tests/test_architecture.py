"""docs/architecture.md's structural claims, checked on the source: imports go one way, mlcls
modules are imported at the top of a module, and one function calls torch.load."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the order docs/architecture.md gives: a module may import its own layer and the ones below
LAYERS = {
    "utils": 0, "errors": 0, "registry": 1, "schema": 1, "config": 1, "cli": 1, "datasets": 2,
    "models": 3, "losses": 3, "evaluation": 3, "engine": 4, "report": 5, "apis": 6,
}  # fmt: skip


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if parts[0] == "mlcls" and len(parts) > 1 else None


def _modules():
    for path in sorted((ROOT / "mlcls").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield path, ".".join(parts[:-1] if parts[-1] == "__init__" else parts), ast.parse(path.read_text(encoding="utf-8"))


def test_imports_go_one_way_and_sit_at_the_top():
    upward, inside = [], []
    for path, module, tree in _modules():
        mine = _layer(module)
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in (n for n in names if n.startswith("mlcls")):
                if mine is not None and (_layer(name) or 0) > mine:
                    upward.append(f"{path.relative_to(ROOT)}:{node.lineno} {module} -> {name}")
                if id(node) not in top_level and not _guarded_by_type_checking(tree, node):
                    inside.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not upward, "imports against the layer order of docs/architecture.md:\n" + "\n".join(upward)
    assert not inside, "mlcls imported inside a function (only optional or slow packages may be):\n" + "\n".join(inside)
    doc = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    assert "`engine`, `report`, `apis`" in doc  # the order above is the one the page states


def _guarded_by_type_checking(tree, node) -> bool:
    return any(isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test) and node in ast.walk(n) for n in tree.body)


def test_one_function_calls_torch_load():
    calls = [
        f"{path.relative_to(ROOT)}:{i}"
        for path, _, _ in _modules()
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\btorch\.load\(", line) and not line.lstrip().startswith(("#", '"', "``")) and "``torch.load(" not in line
    ]
    assert len(calls) == 1 and calls[0].startswith("mlcls/utils/checkpoint.py:"), calls  # read_file


def test_no_function_in_the_library_is_longer_than_a_screen():
    """A function of the library fits on a screen (80 lines with its docstring): longer ones are
    split into named steps."""
    long = [f"{path.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for path, _, tree in _modules() for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 80]  # fmt: skip
    assert not long, "functions over 80 lines:\n" + "\n".join(long)
