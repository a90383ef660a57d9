"""The layout's size rules, enforced: every module in deploy/ has at most 300 lines, every function at most 50."""

import ast
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MAX_MODULE, MAX_FUNCTION = 300, 50


def sizes():
    for path in sorted(DEPLOY.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        yield path, len(text.splitlines()), [
            (node.name, node.lineno, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_modules_have_at_most_300_lines():
    too_long = [f"{p.relative_to(DEPLOY.parent)}: {n} lines" for p, n, _ in sizes() if n > MAX_MODULE]
    assert too_long == []


def test_functions_have_at_most_50_lines():
    too_long = [f"{p.relative_to(DEPLOY.parent)}:{line} {name}: {n} lines"
                for p, _, funcs in sizes() for name, line, n in funcs if n > MAX_FUNCTION]
    assert too_long == []


def test_the_rules_can_fail(tmp_path):
    text = "def f():\n" + "    x = 1\n" * 60
    funcs = [node for node in ast.walk(ast.parse(text)) if isinstance(node, ast.FunctionDef)]
    assert funcs[0].end_lineno - funcs[0].lineno + 1 > MAX_FUNCTION
    assert len(list(sizes())) > 40  # it really walks the package
