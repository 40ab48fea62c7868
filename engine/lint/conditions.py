"""Whether conditions can hold together: a small, sound-when-it-says-no solver.

A condition becomes a disjunction of terms, each a conjunction of atoms: a numeric
comparison (`score < 40`, `employees >= thresholds.x`), a choice among values
(`industry in ['saas']`, `segment != 'finance'`) or a flag (`replied`, `fit`,
`visited('pricing', since='mql')`). `Facts` collects atoms and answers "inconsistent"
only when they cannot all hold (`score < 20` and `score >= 40`, `replied` and `not
replied`, `not visited` and `visited('pricing')`). Whatever it cannot judge (arithmetic,
`stage`, comparisons between two names) constrains nothing, so "may hold" is the safe
answer: a rule reports only what can really happen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple, Union

from .. import expr
from ..model import Funnel

# Predicates a lead's history makes true; a call with arguments implies the call without.
FLAG_PREDICATES = ("opened", "clicked", "replied", "visited", "downloaded", "attended", "registered")
FLAG_NAMES = ("fit", "unsubscribed", "bounced")
# Names whose value a transition itself changes: what they say of one stage says nothing
# of the next, so they constrain nothing here.
MOVING_NAMES = ("stage",)
MAX_TERMS = 64  # a condition with more alternatives than this is not expanded (it may hold)

Value = Union[str, int, float, bool, None]
FlagKey = Tuple[str, Tuple[Value, ...], Tuple[Tuple[str, Value], ...]]


@dataclass(frozen=True)
class Interval:
    """A set of numbers between two bounds, each open or closed."""

    lo: float = -math.inf
    lo_closed: bool = False
    hi: float = math.inf
    hi_closed: bool = False

    def meet(self, other: "Interval") -> "Interval":
        if other.lo > self.lo or (other.lo == self.lo and not other.lo_closed):
            lo, lo_closed = other.lo, other.lo_closed
        else:
            lo, lo_closed = self.lo, self.lo_closed
        if other.hi < self.hi or (other.hi == self.hi and not other.hi_closed):
            hi, hi_closed = other.hi, other.hi_closed
        else:
            hi, hi_closed = self.hi, self.hi_closed
        return Interval(lo, lo_closed, hi, hi_closed)

    @property
    def empty(self) -> bool:
        return self.lo > self.hi or (self.lo == self.hi and not (self.lo_closed and self.hi_closed))

    def describe(self, name: str) -> str:
        low, high = self.lo != -math.inf, self.hi != math.inf
        if low and high and self.lo == self.hi:
            return f"{name} == {_num(self.lo)}"
        lo = f"{_num(self.lo)} {'<=' if self.lo_closed else '<'} " if low else ""
        hi = f" {'<=' if self.hi_closed else '<'} {_num(self.hi)}" if high else ""
        if low and not high:
            return f"{name} {'>=' if self.lo_closed else '>'} {_num(self.lo)}"
        return f"{lo}{name}{hi}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Num:
    """`var op value` with op one of < <= > >= ==."""

    var: str
    op: str
    value: float

    def interval(self) -> Interval:
        v = self.value
        return {"<": Interval(hi=v), "<=": Interval(hi=v, hi_closed=True), ">": Interval(lo=v),
                ">=": Interval(lo=v, lo_closed=True), "==": Interval(v, True, v, True)}[self.op]


@dataclass(frozen=True)
class Choice:
    """`var in values` (positive) or `var not in values`."""

    var: str
    values: FrozenSet[Value]
    positive: bool


@dataclass(frozen=True)
class Flag:
    key: FlagKey
    positive: bool


Atom = Union[Num, Choice, Flag]
Term = Tuple[Atom, ...]

_FLIP = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def flag_text(key: FlagKey) -> str:
    name, args, kwargs = key
    if not args and not kwargs:
        return name
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs]
    return f"{name}({', '.join(parts)})"


def general(key: FlagKey) -> List[FlagKey]:
    """The key and what it implies: `visited('pricing', since='mql')` implies
    `visited('pricing')`, which implies `visited`."""
    name, args, kwargs = key
    out = [key]
    if kwargs:
        out.append((name, args, ()))
    if args and name in FLAG_PREDICATES:
        out.append((name, (), ()))
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Facts:
    """Atoms that hold together. `add` returns None when the new atom contradicts them."""

    nums: Tuple[Tuple[str, Interval], ...] = ()
    choices: Tuple[Tuple[str, Optional[FrozenSet[Value]], FrozenSet[Value]], ...] = ()
    flags: Tuple[Tuple[FlagKey, bool], ...] = ()

    def add(self, atom: Atom, domains: Dict[str, FrozenSet[Value]]) -> Optional["Facts"]:
        if isinstance(atom, Num):
            nums = dict(self.nums)
            now = nums.get(atom.var, Interval()).meet(atom.interval())
            if now.empty:
                return None
            nums[atom.var] = now
            return replace(self, nums=tuple(sorted(nums.items())))
        if isinstance(atom, Choice):
            table = {v: (a, x) for v, a, x in self.choices}
            allowed, excluded = table.get(atom.var, (domains.get(atom.var), frozenset()))
            if atom.positive:
                allowed = atom.values if allowed is None else allowed & atom.values
            else:
                excluded = excluded | atom.values
            if allowed is not None and not (allowed - excluded):
                return None
            table[atom.var] = (allowed, excluded)
            return replace(self, choices=tuple(sorted(((v, a, x) for v, (a, x) in table.items()), key=_choice_key)))
        flags = dict(self.flags)
        keys = general(atom.key) if atom.positive else [atom.key]
        for key in keys:
            if flags.get(key, atom.positive) != atom.positive:
                return None
            flags[key] = atom.positive
        if not atom.positive and any(v and atom.key in general(k) for k, v in flags.items()):
            return None
        return replace(self, flags=tuple(sorted(flags.items(), key=repr)))

    def add_all(self, atoms: Iterable[Atom], domains: Dict[str, FrozenSet[Value]]) -> Optional["Facts"]:
        facts: Optional[Facts] = self
        for atom in atoms:
            if facts is None:
                return None
            facts = facts.add(atom, domains)
        return facts

    def describe(self) -> str:
        """The facts in the condition language: `score < 40 and replied`."""
        parts = [iv.describe(var) for var, iv in self.nums]
        for var, allowed, excluded in self.choices:
            if allowed is not None:
                left = sorted(allowed - excluded, key=repr)
                parts.append(f"{var} == {left[0]!r}" if len(left) == 1 else
                             f"{var} in [{', '.join(repr(v) for v in left)}]")
            elif excluded:
                left = sorted(excluded, key=repr)
                parts.append(f"{var} != {left[0]!r}" if len(left) == 1 else
                             f"{var} not in [{', '.join(repr(v) for v in left)}]")
        shown = [k for k, v in self.flags if not any(v2 and k != k2 and k in general(k2) for k2, v2 in self.flags)]
        parts.extend(flag_text(k) if v else f"not {flag_text(k)}" for k, v in self.flags if k in shown)
        return " and ".join(parts)


def _choice_key(entry: Tuple[str, Optional[FrozenSet[Value]], FrozenSet[Value]]) -> Tuple[str, str, str]:
    var, allowed, excluded = entry
    return var, repr(sorted(allowed, key=repr)) if allowed is not None else "", repr(sorted(excluded, key=repr))


def domains(funnel: Funnel) -> Dict[str, FrozenSet[Value]]:
    """The values a name can take, where the definition lists them."""
    out: Dict[str, FrozenSet[Value]] = {a.name: frozenset(a.enum) for a in funnel.profile if a.enum is not None}
    out["segment"] = frozenset(s.name for s in funnel.segments) | {None}
    out["persona"] = frozenset(p.name for p in funnel.personas) | {None}
    return out


class _Unknown(Exception):
    """A part of a condition the solver does not judge."""


def terms(node: expr.Node, funnel: Funnel) -> List[Term]:
    """The condition as alternatives of atoms that hold together (`[()]`: may always
    hold; `[]`: never holds)."""
    try:
        found = _dnf(node, True, funnel)
    except _TooMany:
        return [()]
    return [tuple(t) for t in found]


class _TooMany(Exception):
    pass


def negated_terms(node: expr.Node, funnel: Funnel) -> List[Term]:
    """The terms of `not (node)`."""
    try:
        found = _dnf(node, False, funnel)
    except _TooMany:
        return [()]
    return [tuple(t) for t in found]


def exclusive(a: List[Term], b: List[Term], funnel: Funnel) -> bool:
    """True when no alternative of `a` can hold together with any alternative of `b`."""
    doms = domains(funnel)
    return all(Facts().add_all(x + y, doms) is None for x in a for y in b)


def guard_terms(when: Optional[expr.Node], unless: Optional[expr.Node], funnel: Funnel) -> List[Term]:
    """The terms of `when and not unless` (either may be missing)."""
    left = terms(when, funnel) if when is not None else [()]
    right = negated_terms(unless, funnel) if unless is not None else [()]
    out = [x + y for x in left for y in right]
    return out if len(out) <= MAX_TERMS else [()]


def _dnf(node: expr.Node, positive: bool, funnel: Funnel) -> List[List[Atom]]:
    if isinstance(node, expr.Unary) and node.op == "not":
        return _dnf(node.operand, not positive, funnel)
    if isinstance(node, expr.Binary) and node.op in ("and", "or"):
        left = _dnf(node.left, positive, funnel)
        right = _dnf(node.right, positive, funnel)
        if (node.op == "or") == positive:
            out = left + right
        else:
            out = [a + b for a in left for b in right]
        if len(out) > MAX_TERMS:
            raise _TooMany()
        return out
    if isinstance(node, expr.Literal) and isinstance(node.value, bool):
        return [[]] if node.value == positive else []
    try:
        atom = _atom(node, positive, funnel)
    except _Unknown:
        return [[]]
    return [[atom]]


def _number(node: expr.Node, funnel: Funnel) -> float:
    if isinstance(node, expr.Literal) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, expr.Unary) and node.op == "-":
        return -_number(node.operand, funnel)
    if isinstance(node, expr.Name) and len(node.parts) == 2 and node.parts[0] == "thresholds":
        value = funnel.scoring.threshold(node.parts[1])
        if value is not None:
            return float(value)
    raise _Unknown()


def _variable(node: expr.Node) -> str:
    if isinstance(node, expr.Name) and node.parts[0] != "thresholds" and node.dotted not in MOVING_NAMES:
        return node.dotted
    if isinstance(node, expr.Call) and node.name == "days_since" and not node.kwargs and len(node.args) == 1 \
            and isinstance(node.args[0], expr.Literal):
        return f"days_since({node.args[0].value!r})"
    raise _Unknown()


def _literal(node: expr.Node) -> Value:
    if isinstance(node, expr.Literal):
        return node.value
    raise _Unknown()


def _atom(node: expr.Node, positive: bool, funnel: Funnel) -> Atom:
    if isinstance(node, expr.Binary) and node.op in ("in", "not in"):
        var = _variable(node.left)
        if not isinstance(node.right, expr.ListExpr):
            raise _Unknown()
        values = frozenset(_literal(i) for i in node.right.items)
        return Choice(var, values, positive == (node.op == "in"))
    if isinstance(node, expr.Binary) and node.op in _FLIP:
        op = node.op if positive else _FLIP[node.op]
        try:
            var, other = _variable(node.left), node.right
        except _Unknown:
            var, other, op = _variable(node.right), node.left, _MIRROR[op]
        if isinstance(other, expr.Literal) and (isinstance(other.value, (str, bool)) or other.value is None):
            if op not in ("==", "!="):
                raise _Unknown()
            return Choice(var, frozenset([other.value]), op == "==")
        value = _number(other, funnel)
        if op == "!=":
            raise _Unknown()
        return Num(var, op, value)
    if isinstance(node, expr.Name) and (node.dotted in FLAG_NAMES or node.dotted in FLAG_PREDICATES
                                        or _is_boolean(node.dotted, funnel)):
        return Flag((node.dotted, (), ()), positive)
    if isinstance(node, expr.Call) and node.name in FLAG_PREDICATES:
        args = tuple(_literal(a) for a in node.args)
        kwargs = tuple(sorted((k, _literal(v)) for k, v in node.kwargs))
        return Flag((node.name, args, kwargs), positive)
    raise _Unknown()


def _is_boolean(name: str, funnel: Funnel) -> bool:
    attr = funnel.attribute(name)
    return attr is not None and attr.type == "boolean"
