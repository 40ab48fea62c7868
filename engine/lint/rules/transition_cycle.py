"""Transitions that let a lead bounce between stages with nothing new happening.

A loop of transitions is a problem when the conditions along it can all hold at once:
then every event (or tick) moves the lead round the loop again, re-running handoffs
and leaving reports meaningless. A loop whose conditions exclude each other is fine
and standard practice: a recycle rule with a gap (back to `subscriber` below 20 points,
requalified at 40) cannot bounce, because no score is both below 20 and at least 40.
A move on a CRM event (`on: crm.deal_lost`) is sales acting, not an automatic bounce,
so a loop through one is never reported. Nor is a move out of a stage that needs an event
since the lead entered it (`attended('q3-live', since='subscriber')` out of subscriber):
coming back round resets `since=`, so every round needs a new event. Conditions fnl
cannot compare (arithmetic, `stage`) are taken to possibly hold.

Fails:
    transitions:
      - {from: mql, to: sql, when: "replied"}
      - {from: sql, to: mql, when: "score < 40"}       # a lead that replied, below 40

Passes:
    transitions:
      - {from: subscriber, to: mql, when: "score >= 40"}
      - {from: mql, to: subscriber, when: "score < 20"}  # the gap: no score is both
      - {from: sql, to: mql, on: crm.deal_lost}
"""
from __future__ import annotations

from typing import Dict, FrozenSet, Iterator, List, Optional, Set, Tuple

from ...model import Transition
from .. import Finding
from ..conditions import Facts, Flag, Term, domains, general, terms
from ..context import Context

ID = "FNL303"
NAME = "transition-cycle"
SEVERITY = "error"

# States (stage, facts so far) one lint run explores before it stops judging conditions.
MAX_STATES = 20_000

Edge = Tuple[Transition, Term]


def _edges(ctx: Context) -> Tuple[Dict[str, List[Edge]], Dict[Tuple[int, Term], Term]]:
    """Automatic moves (a `when` and no `on`), one edge per alternative of the condition,
    and the alternative as written for each term the search uses. Moves out of terminal
    stages and into the stage itself are FNL308's."""
    f = ctx.funnel
    moves = [t for t in f.transitions if t.on is None and t.when is not None and t.to in f.stages]
    alternatives = {t.index: terms(t.when.tree, f) for t in moves if t.when is not None}
    flags = [a for ts in alternatives.values() for term in ts for a in term if isinstance(a, Flag)]
    negated = {a.key for a in flags if not a.positive}
    implied = {g for a in flags if a.positive for g in general(a.key)}
    written: Dict[Tuple[int, Term], Term] = {}
    out: Dict[str, List[Edge]] = {}
    for t in moves:
        for term in alternatives[t.index]:
            # A flag only ever asserted one way cannot contradict anything: the search keeps
            # just what it implies that something denies, so `clicked('a')` and `clicked('b')`
            # are one state where only `not clicked` matters.
            kept: List = []
            for a in term:
                if not isinstance(a, Flag):
                    kept.append(a)
                elif a.positive:
                    kept.extend(Flag(g, True) for g in general(a.key) if g in negated)
                elif a.key in implied:
                    kept.append(a)
            lean = tuple(dict.fromkeys(kept))
            written.setdefault((t.index, lean), term)  # what it leaves out contradicts nothing
            for s in t.sources:
                if s in f.stages and s != t.to and s not in f.terminal_stages and not _since_entering(term, s):
                    out.setdefault(s, []).append((t, lean))
    return out, written


def _since_entering(term: Term, stage: str) -> bool:
    """Whether the alternative needs an event since the lead entered `stage` (`attended('q3-live',
    since='subscriber')` out of subscriber): a loop through `stage` re-enters it, which resets
    `since=`, so that move needs something new on every round and cannot bounce."""
    return any(isinstance(a, Flag) and a.positive and ("since", stage) in a.key[2] for a in term)


def _loop_through(root: str, edges: Dict[str, List[Edge]], allowed: Set[str], doms, budget: List[int],
                  judge: bool) -> Optional[Tuple[List[Edge], Facts]]:
    """A loop from `root` back to it through `allowed` stages whose conditions can all
    hold at once (with `judge` False: any loop), depth first in declaration order."""
    start = Facts()
    seen: Set[Tuple[str, Facts]] = {(root, start)}
    stack: List[Tuple[str, Facts, Iterator[Edge], List[Edge]]] = [(root, start, iter(edges.get(root, [])), [])]
    while stack:
        stage, facts, pending, path = stack[-1]
        edge = next(pending, None)
        if edge is None:
            stack.pop()
            continue
        t, term = edge
        after = facts.add_all(term, doms) if judge else facts
        if after is None:
            continue
        if t.to == root:
            return path + [edge], after
        if t.to not in allowed or (t.to, after) in seen:
            continue
        budget[0] -= 1
        if budget[0] < 0:
            raise OverflowError
        seen.add((t.to, after))
        stack.append((t.to, after, iter(edges.get(t.to, [])), path + [edge]))
    return None


def _message(root: str, loop: List[Edge], facts: Facts, judged: bool) -> Tuple[str, str]:
    stages = [root] + [t.to for t, _ in loop]
    hops = []
    here = root
    for t, _term in loop:
        hops.append(f"`{t.when.source if t.when else ''}` ({here} → {t.to})")
        here = t.to
    route = " → ".join(stages)
    if not judged:
        return (f"transitions form a loop {route}, with more conditions than fnl can compare: "
                f"{'; '.join(hops)}",
                "make sure the conditions exclude each other (a gap between the scores, such as back below 20 "
                "and forward at 40), or move the lead back only on a CRM event (`on: crm.deal_lost`)")
    witness = facts.describe()
    conditions = " and ".join(hops) if len(hops) == 2 else "; ".join(hops)
    example = f", as for a lead with `{witness}`" if witness else ", and nothing in them excludes another"
    return (f"transitions form a loop {route} that a lead can bounce round with nothing new happening: "
            f"{conditions} can all hold at once{example}",
            "make the conditions exclude each other, for example with a gap between the scores (back below "
            "20, forward at 40), or move the lead back only when sales acts (`on: crm.deal_lost`)")


def _witness(loop: List[Edge], facts: Facts, written: Dict[Tuple[int, Term], Term], doms) -> Facts:
    """The facts of the loop with every alternative as written (more telling: `replied`
    rather than nothing), when they still hold together."""
    full: Optional[Facts] = Facts()
    for t, lean in loop:
        full = full.add_all(written.get((t.index, lean)) or lean, doms) if full is not None else None
    return full if full is not None else facts


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    edges, written = _edges(ctx)
    doms = domains(f)
    budget = [MAX_STATES]
    judge = True
    reported: Set[FrozenSet[str]] = set()
    # Every loop is found from its first stage in stage order, through later stages only:
    # one search per stage, each bounded by the (stage, facts) pairs it has seen.
    for i, root in enumerate(f.stages):
        allowed = set(f.stages[i + 1:])
        try:
            found = _loop_through(root, edges, allowed, doms, budget, judge)
        except OverflowError:
            judge = False
            budget = [MAX_STATES]
            found = _loop_through(root, edges, allowed, doms, budget, judge)
        if found is None:
            continue
        loop, facts = found
        stages = frozenset([root] + [t.to for t, _ in loop])
        if stages in reported:
            continue
        reported.add(stages)
        message, help = _message(root, loop, _witness(loop, facts, written, doms) if judge else facts, judge)
        yield Finding(loop[-1][0].path, message, help)
