"""Evaluate plan condition trees for one lead, and explain why they held.

The same trees are evaluated for columns of leads by the simulator; this is the
scalar evaluator the runtime and trace use. `explain` returns the facts that made a
condition true, in words: "score 42 ≥ 40 and fit: industry=saas, employees=120".
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

from .plan import Tree

Resolve = Callable[[Tree], Any]

_SYMBOL = {">=": "≥", "<=": "≤", "!=": "≠", "==": "=", ">": ">", "<": "<", "in": "in", "not in": "not in"}


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op in ("in", "not in"):
        try:
            inside = isinstance(b, (list, tuple)) and a is not None and a in b
        except TypeError:
            inside = False
        return inside if op == "in" else not inside
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) != isinstance(b, str):
        return False
    try:
        if op == "<":
            return bool(a < b)
        if op == "<=":
            return bool(a <= b)
        if op == ">":
            return bool(a > b)
        return bool(a >= b)
    except TypeError:  # a list against a number, say: no ordering holds
        return False


def _arith(op: str, a: Any, b: Any) -> Any:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b else None


def evaluate(tree: Tree, resolve: Resolve) -> Any:
    """Value of a tree; `resolve` answers `attr`, `var` and `call` nodes."""
    if "lit" in tree:
        return tree["lit"]
    if "attr" in tree or "var" in tree or "call" in tree:
        return resolve(tree)
    if "list" in tree:
        return [evaluate(i, resolve) for i in tree["list"]]
    op = tree["op"]
    args = tree["args"]
    if op == "and":
        return bool(evaluate(args[0], resolve)) and bool(evaluate(args[1], resolve))
    if op == "or":
        return bool(evaluate(args[0], resolve)) or bool(evaluate(args[1], resolve))
    if op == "not":
        return not evaluate(args[0], resolve)
    if op == "neg":
        v = evaluate(args[0], resolve)
        return -v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    a, b = evaluate(args[0], resolve), evaluate(args[1], resolve)
    if op in ("+", "-", "*", "/"):
        return _arith(op, a, b)
    return _compare(op, a, b)


def holds(tree: Optional[Tree], resolve: Resolve) -> bool:
    return True if tree is None else bool(evaluate(tree, resolve))


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def render(tree: Tree) -> str:
    """A tree back as source-like text (for calls in explanations)."""
    if "lit" in tree:
        return repr(tree["lit"]) if isinstance(tree["lit"], str) else _show(tree["lit"])
    if "attr" in tree:
        return str(tree["attr"])
    if "var" in tree:
        return str(tree["var"])
    if "list" in tree:
        return "[" + ", ".join(render(i) for i in tree["list"]) + "]"
    if "call" in tree:
        parts = [render(a) for a in tree["args"]] + [f"{k}={render(v)}" for k, v in sorted(tree["kwargs"].items())]
        return f"{tree['call']}({', '.join(parts)})"
    if tree["op"] in ("not", "neg"):
        return ("not " if tree["op"] == "not" else "-") + render(tree["args"][0])
    return f"{render(tree['args'][0])} {tree['op']} {render(tree['args'][1])}"


def explain(tree: Tree, resolve: Resolve, describe_var: Optional[Callable[[str], str]] = None) -> str:
    """Why a (true) condition holds, naming the values it read."""
    parts: List[str] = []
    _why(tree, resolve, parts, describe_var)
    return " and ".join(p for p in parts if p)


def _operand(tree: Tree, resolve: Resolve) -> str:
    if "attr" in tree or "var" in tree:
        name = tree.get("attr") or tree.get("var")
        return f"{name} {_show(resolve(tree))}"
    return render(tree) if "lit" not in tree else _show(tree["lit"])


def _why(tree: Tree, resolve: Resolve, out: List[str], describe_var: Optional[Callable[[str], str]]) -> None:
    if "op" in tree and tree["op"] == "and":
        for arg in tree["args"]:
            _why(arg, resolve, out, describe_var)
        return
    if "op" in tree and tree["op"] == "or":
        for arg in tree["args"]:
            if evaluate(arg, resolve):
                _why(arg, resolve, out, describe_var)
                return
    if "op" in tree and tree["op"] in _SYMBOL:
        a, b = tree["args"]
        right = _show(b["lit"]) if "lit" in b else _operand(b, resolve)
        out.append(f"{_operand(a, resolve)} {_SYMBOL[tree['op']]} {right}")
        return
    if "var" in tree and describe_var is not None:
        out.append(describe_var(tree["var"]))
        return
    if "attr" in tree or "var" in tree:
        out.append(f"{tree.get('attr') or tree.get('var')}={_show(resolve(tree))}")
        return
    out.append(render(tree))
