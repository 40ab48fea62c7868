"""The condition parser on its own: error offsets, bounds, and no exception but its own.

The acceptance cases check where these errors land in a YAML file; these tests pin the
0-based offsets inside the condition that those columns are computed from."""
from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import expr


@pytest.mark.parametrize("source,offset,message,help", [
    ("fit && score > 1", 4, "`&&` is not an operator", "write `and`"),
    ("fit || replied", 4, "`||` is not an operator", "write `or`"),
    ("industry == 'saas", 12, "string is not closed", "'"),
    ('industry == "saas', 12, "string is not closed", '"'),
    ("score = 40", 6, "`=` assigns", "write `==`"),
    ("10 < score < 50", 11, "cannot be chained", "a < b and b < c"),
    ("fit and ()", 9, "unexpected `)`", "expected a name"),
    ("", 0, "condition is empty", "score >= 40"),
    ("score >=", 8, "ends too early", "missing"),
    ("clicked('x'", 11, "expected `)`", "clicked("),
    ("[1, 2", 5, "expected `]`", "close the list"),
    ("thresholds.mql(1)", 0, "cannot be called", "predicates"),
    ("visited(since='mql', 'pricing')", 21, "positional argument follows", "positional arguments first"),
    ("score > 1 fit", 10, "after a complete condition", "and"),
    ("score ? 1", 6, "unexpected character `?`", "operators"),
    ("stage not 'sql'", 10, "expected `in`", "not in"),
])
def test_syntax_error_offsets(source, offset, message, help):
    with pytest.raises(expr.ExprSyntaxError) as info:
        expr.parse(source)
    assert info.value.offset == offset
    assert message in info.value.message
    assert help in info.value.help


@pytest.mark.parametrize("source", [
    "fit and score >= thresholds.mql",
    "industry in ['saas', 'finance'] and employees >= 50",
    "replied or visited('pricing', since='mql')",
    "not clicked('saas/case-study')",
    "stage not in ['sql', 'customer']",
    "-score * 2 + 1 / 3 - 4 < 10",
    "(a or b) and not (c or d)",
    "x == null or y != true or z == false",
    'segment == "saas"',
])
def test_valid_conditions_parse(source):
    expr.parse(source)


def test_precedence_and_names():
    tree = expr.parse("a or b and not c == 1")
    assert isinstance(tree, expr.Binary) and tree.op == "or"
    assert isinstance(tree.right, expr.Binary) and tree.right.op == "and"
    assert isinstance(tree.right.right, expr.Unary) and tree.right.right.op == "not"
    assert [n.dotted for n in expr.names(expr.parse("x.y > 1 and clicked(z)"))] == ["x.y", "z"]
    assert [c.name for c in expr.calls(expr.parse("opened() or clicked('a')"))] == ["opened", "clicked"]


@pytest.mark.parametrize("source", [
    "(" * 5000 + "1" + ")" * 5000,
    "not " * 5000 + "x",
    "-" * 5000 + "1",
    "[" * 5000 + "]" * 5000,
    "f(" * 5000 + ")" * 5000,
], ids=["parens", "not", "minus", "lists", "calls"])
def test_deep_nesting_is_a_syntax_error_not_a_recursion_error(source):
    start = time.process_time()
    with pytest.raises(expr.ExprSyntaxError) as info:
        expr.parse(source[:expr.MAX_LENGTH])
    assert "deeper than" in info.value.message
    assert time.process_time() - start < 1


def test_overlong_condition_rejected():
    with pytest.raises(expr.ExprSyntaxError) as info:
        expr.parse("score > 1 and " * 200 + "fit")
    assert "longer than" in info.value.message


TOKENS = st.sampled_from(["a", "b.c", "1", "2.5", "'s'", '"t"', "(", ")", "[", "]", ",", "==", "=", "<", ">=",
                          "and", "or", "not", "in", "true", "null", "&&", "!", "-", "*", "f(", "x=", " ", "'"])


@settings(max_examples=400, deadline=None)
@given(st.lists(TOKENS, max_size=25).map(" ".join) | st.text(max_size=60))
def test_parser_raises_only_its_own_error(source):
    try:
        expr.parse(source)
    except expr.ExprSyntaxError as exc:
        assert 0 <= exc.offset <= len(source)
        assert exc.message and exc.help


def test_a_long_chain_of_operators_is_a_located_syntax_error():
    """Chains of hundreds of `or`s would build a tree too deep to walk: refused at the operator past the limit."""
    from engine import expr

    source = " or ".join(["fit"] * 150)
    with pytest.raises(expr.ExprSyntaxError) as exc:
        expr.parse(source)
    assert "more than 100 operators" in str(exc.value)
    assert exc.value.offset == len("fit ") + 100 * len("or fit ")  # the 101st `or`
    expr.parse(" or ".join(["fit"] * 101))  # 100 operators are fine
