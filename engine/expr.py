"""The condition language: a small, safe expression syntax parsed into a data tree.

Conditions come from pull requests, so they are never `eval`-ed. They parse into frozen
nodes that later stages check (names must be profile attributes or engine predicates),
compile into the plan, and evaluate for one lead or a column of leads.

    fit and score >= thresholds.mql
    industry in ['saas', 'finance'] and employees >= 50
    replied or visited('pricing', since='mql')
    not clicked('saas/case-study')

Grammar (lowest precedence first): `or`, `and`, `not`, comparisons (`== != < <= > >=`,
`in`, `not in`; not chained), `+ -`, `* /`, unary `-`, then atoms: numbers, quoted
strings, `true`/`false`/`null`, lists `[a, b]`, dotted names `thresholds.mql`, calls
`visited('pricing', since='mql')` and parentheses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import List, Optional, Tuple, Union

MAX_LENGTH = 2000
MAX_DEPTH = 40
# Chained operators build a tree as deep as the chain: `a or b or ... ` 300 times would
# recurse past Python's limit wherever the tree is walked, so their number is bounded too.
MAX_OPERATORS = 100

# Functions the engine knows; names the engine provides besides profile attributes.
PREDICATES = {
    "opened": "the lead opened any email, or the named template",
    "clicked": "the lead clicked in any email, or in the named template",
    "replied": "the lead replied to any email, or to the named template",
    "visited": "the lead visited any page, or the named page; `since='stage'` counts only visits after reaching that stage",
    "downloaded": "the lead downloaded the named lead magnet (any, without a name)",
    "attended": "the lead attended any webinar, or the named webinar",
    "registered": "the lead registered for any webinar, or the named webinar",
    "stage_at_least": "the lead's stage is the named stage or a later one",
    "days_since": "days since the named event (`'optin'`, a stage name, or `'last_email'`)",
}
NAMES = {
    "score": "the lead's current score",
    "stage": "the lead's current stage",
    "fit": "whether the lead matches the ICP (`fit.when`)",
    "segment": "the lead's segment name",
    "persona": "the lead's persona name",
    "thresholds": "score thresholds, as `thresholds.<name>`",
    "email": "the lead's email address",
    "emails_sent": "marketing emails sent to the lead so far",
    "unsubscribed": "whether the lead has unsubscribed (or complained): `not unsubscribed` keeps a move from "
                    "happening after it",
    "bounced": "whether the lead's address is suppressed (a hard bounce, repeated soft bounces or a complaint)",
}


@dataclass(frozen=True)
class Literal:
    value: Union[str, int, float, bool, None]
    offset: int


@dataclass(frozen=True)
class Name:
    parts: Tuple[str, ...]
    offset: int

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class ListExpr:
    items: Tuple["Node", ...]
    offset: int


@dataclass(frozen=True)
class Call:
    name: str
    args: Tuple["Node", ...]
    kwargs: Tuple[Tuple[str, "Node"], ...]
    offset: int


@dataclass(frozen=True)
class Unary:
    op: str  # "not" or "-"
    operand: "Node"
    offset: int


@dataclass(frozen=True)
class Binary:
    op: str  # and or == != < <= > >= in "not in" + - * /
    left: "Node"
    right: "Node"
    offset: int


Node = Union[Literal, Name, ListExpr, Call, Unary, Binary]


class ExprSyntaxError(Exception):
    """A syntax error at character `offset` (0-based) of the condition."""

    def __init__(self, message: str, offset: int, help: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.help = help


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>[0-9]+(\.[0-9]+)?)
  | (?P<string>'[^'\\\n]*'|"[^"\\\n]*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.|\+|-|\*|/|=)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_MISTAKES = {
    "&&": ("`&&` is not an operator", "write `and`"),
    "||": ("`||` is not an operator", "write `or`"),
    "!": ("`!` is not an operator", "write `not`, or `!=` for inequality"),
    "&": ("`&` is not an operator", "write `and`"),
    "|": ("`|` is not an operator", "write `or`"),
}


@dataclass(frozen=True)
class Token:
    kind: str  # number string name keyword op end
    text: str
    offset: int


def tokenize(source: str) -> List[Token]:
    tokens: List[Token] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            for bad, (msg, help) in _MISTAKES.items():
                if source.startswith(bad, pos):
                    raise ExprSyntaxError(msg, pos, help)
            ch = source[pos]
            if ch in "'\"":
                raise ExprSyntaxError("string is not closed", pos, f"end it with a matching {ch}")
            raise ExprSyntaxError(f"unexpected character `{ch}`", pos,
                                  "conditions use names, numbers, 'quoted strings' and operators")
        kind = m.lastgroup or ""
        if kind == "name" and m.group() in _KEYWORDS:
            kind = "keyword"
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("end", "", len(source)))
    return tokens


_OPERATORS = frozenset(("or", "and", "not", "==", "!=", "<", "<=", ">", ">=", "in", "+", "-", "*", "/"))


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0
        self.depth = 0
        self.operators = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        if tok.kind in ("op", "keyword") and tok.text in _OPERATORS:
            self.operators += 1
            if self.operators > MAX_OPERATORS:
                raise ExprSyntaxError(f"condition has more than {MAX_OPERATORS} operators", tok.offset,
                                      "split it into named segments, personas or fit rules")
        return tok

    def at(self, *texts: str) -> bool:
        return self.tok.kind in ("op", "keyword") and self.tok.text in texts

    def expect(self, text: str, help: str) -> Token:
        if not self.at(text):
            got = f"`{self.tok.text}`" if self.tok.kind != "end" else "the end of the condition"
            raise ExprSyntaxError(f"expected `{text}` but found {got}", self.tok.offset, help)
        return self.take()

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise ExprSyntaxError("condition is empty", 0, "write a condition such as `score >= 40`")
        node = self.or_()
        if self.tok.kind != "end":
            tok = self.tok
            if tok.text == "=":
                raise ExprSyntaxError("`=` assigns; conditions compare", tok.offset, "write `==` to compare")
            raise ExprSyntaxError(f"unexpected `{tok.text}` after a complete condition", tok.offset,
                                  "join conditions with `and` / `or`, or remove the extra text")
        return node

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprSyntaxError(f"condition nests deeper than {MAX_DEPTH} levels", self.tok.offset,
                                  "simplify the condition")

    def or_(self) -> Node:
        self.nest()
        node = self.and_()
        while self.at("or"):
            op = self.take()
            node = Binary("or", node, self.and_(), op.offset)
        self.depth -= 1
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.at("and"):
            op = self.take()
            node = Binary("and", node, self.not_(), op.offset)
        return node

    def not_(self) -> Node:
        if self.at("not"):
            op = self.take()
            self.nest()
            operand = self.not_()
            self.depth -= 1
            return Unary("not", operand, op.offset)
        return self.comparison()

    def comparison(self) -> Node:
        node = self.sum_()
        if self.at("==", "!=", "<", "<=", ">", ">=", "in", "not"):
            op = self.take()
            text = op.text
            if text == "not":
                self.expect("in", "write `not in` to test that a value is not in a list")
                text = "not in"
            right = self.sum_()
            node = Binary(text, node, right, op.offset)
            if self.at("==", "!=", "<", "<=", ">", ">=", "in"):
                raise ExprSyntaxError("comparisons cannot be chained", self.tok.offset,
                                      "write `a < b and b < c`")
        elif self.at("="):
            raise ExprSyntaxError("`=` assigns; conditions compare", self.tok.offset, "write `==` to compare")
        return node

    def sum_(self) -> Node:
        node = self.product()
        while self.at("+", "-"):
            op = self.take()
            node = Binary(op.text, node, self.product(), op.offset)
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.at("*", "/"):
            op = self.take()
            node = Binary(op.text, node, self.unary(), op.offset)
        return node

    def unary(self) -> Node:
        if self.at("-"):
            op = self.take()
            self.nest()
            operand = self.unary()
            self.depth -= 1
            return Unary("-", operand, op.offset)
        return self.atom()

    def atom(self) -> Node:
        tok = self.tok
        if tok.kind == "number":
            self.take()
            return Literal(float(tok.text) if "." in tok.text else int(tok.text), tok.offset)
        if tok.kind == "string":
            self.take()
            return Literal(tok.text[1:-1], tok.offset)
        if tok.kind == "keyword" and tok.text in ("true", "false", "null"):
            self.take()
            return Literal({"true": True, "false": False, "null": None}[tok.text], tok.offset)
        if tok.kind == "name":
            return self.name()
        if self.at("("):
            self.take()
            node = self.or_()
            self.expect(")", "close the parenthesis")
            return node
        if self.at("["):
            return self.list_()
        if tok.kind == "end":
            raise ExprSyntaxError("condition ends too early", tok.offset,
                                  "something is missing after the last operator")
        raise ExprSyntaxError(f"unexpected `{tok.text}`", tok.offset,
                              "expected a name, number, 'string', list or `(`")

    def name(self) -> Node:
        first = self.take()
        parts = [first.text]
        while self.at("."):
            self.take()
            if self.tok.kind != "name":
                raise ExprSyntaxError("expected a name after `.`", self.tok.offset, "write `thresholds.mql`")
            parts.append(self.take().text)
        if not self.at("("):
            return Name(tuple(parts), first.offset)
        if len(parts) > 1:
            raise ExprSyntaxError(f"`{'.'.join(parts)}` cannot be called", first.offset,
                                  "only engine predicates such as `clicked('x')` take arguments")
        self.take()
        args: List[Node] = []
        kwargs: List[Tuple[str, Node]] = []
        self.nest()
        while not self.at(")"):
            if self.tok.kind == "name" and self.tokens[self.i + 1].text == "=":
                key = self.take()
                self.take()
                kwargs.append((key.text, self.or_()))
            else:
                if kwargs:
                    raise ExprSyntaxError("a positional argument follows a keyword argument", self.tok.offset,
                                          "put positional arguments first")
                args.append(self.or_())
            if not self.at(","):
                break
            self.take()
        self.expect(")", f"close the call to `{first.text}(` with `)`")
        self.depth -= 1
        return Call(first.text, tuple(args), tuple(kwargs), first.offset)

    def list_(self) -> Node:
        start = self.take()
        items: List[Node] = []
        self.nest()
        while not self.at("]"):
            items.append(self.or_())
            if not self.at(","):
                break
            self.take()
        self.expect("]", "close the list with `]`")
        self.depth -= 1
        return ListExpr(tuple(items), start.offset)


@lru_cache(maxsize=8192)
def parse(source: str) -> Node:
    """Parse a condition; raise ExprSyntaxError with the offending offset. Trees are
    immutable, so validation and the model share one parse per distinct condition."""
    if len(source) > MAX_LENGTH:
        raise ExprSyntaxError(f"condition is longer than {MAX_LENGTH} characters", MAX_LENGTH,
                              "split it into named segments, personas or fit rules")
    return _Parser(source).parse()


def names(node: Node) -> List[Name]:
    """Every name the condition reads (not call names), in source order."""
    out: List[Name] = []
    stack: List[Optional[Node]] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Name):
            out.append(n)
        elif isinstance(n, Binary):
            stack.extend((n.right, n.left))
        elif isinstance(n, Unary):
            stack.append(n.operand)
        elif isinstance(n, ListExpr):
            stack.extend(reversed(n.items))
        elif isinstance(n, Call):
            stack.extend(v for _, v in reversed(n.kwargs))
            stack.extend(reversed(n.args))
    return sorted(out, key=lambda x: x.offset)


def calls(node: Node) -> List[Call]:
    """Every call in the condition, in source order."""
    out: List[Call] = []
    stack: List[Node] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Call):
            out.append(n)
            stack.extend(v for _, v in n.kwargs)
            stack.extend(n.args)
        elif isinstance(n, Binary):
            stack.extend((n.left, n.right))
        elif isinstance(n, Unary):
            stack.append(n.operand)
        elif isinstance(n, ListExpr):
            stack.extend(n.items)
    return sorted(out, key=lambda x: x.offset)


class Unknown(Exception):
    """Evaluation needs a name or predicate the caller did not provide."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _compare(op: str, a: object, b: object) -> bool:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op in ("in", "not in"):
        inside = isinstance(b, (list, tuple, str)) and a is not None and (a in b)  # type: ignore[operator]
        return inside if op == "in" else not inside
    if a is None or b is None or isinstance(a, bool) != isinstance(b, bool):
        return False  # a missing value satisfies no ordering
    try:
        if op == "<":
            return a < b  # type: ignore[operator,no-any-return]
        if op == "<=":
            return a <= b  # type: ignore[operator,no-any-return]
        if op == ">":
            return a > b  # type: ignore[operator,no-any-return]
        return a >= b  # type: ignore[operator,no-any-return]
    except TypeError:
        return False


def evaluate(node: Node, lookup, call=None):  # type: ignore[no-untyped-def]
    """Evaluate a condition for one lead. `lookup(dotted_name)` returns a value or
    raises Unknown; `call(name, args, kwargs)` evaluates an engine predicate."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Name):
        return lookup(node.dotted)
    if isinstance(node, ListExpr):
        return [evaluate(i, lookup, call) for i in node.items]
    if isinstance(node, Unary):
        value = evaluate(node.operand, lookup, call)
        if node.op == "not":
            return not value
        return -value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if isinstance(node, Call):
        if call is None:
            raise Unknown(node.name)
        args = [evaluate(a, lookup, call) for a in node.args]
        kwargs = {k: evaluate(v, lookup, call) for k, v in node.kwargs}
        return call(node.name, args, kwargs)
    assert isinstance(node, Binary)
    if node.op == "and":
        return bool(evaluate(node.left, lookup, call)) and bool(evaluate(node.right, lookup, call))
    if node.op == "or":
        return bool(evaluate(node.left, lookup, call)) or bool(evaluate(node.right, lookup, call))
    left = evaluate(node.left, lookup, call)
    right = evaluate(node.right, lookup, call)
    if node.op in ("+", "-", "*", "/"):
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
            return None
        if node.op == "+":
            return left + right
        if node.op == "-":
            return left - right
        if node.op == "*":
            return left * right
        return left / right if right else None
    return _compare(node.op, left, right)
