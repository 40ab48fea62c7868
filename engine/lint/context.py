"""What rules look at: the typed funnel, its templates, and derived facts computed once."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Dict, List, Optional, Set, Tuple

from .. import expr, templates
from ..errors import JsonPath
from ..model import Condition, Funnel


@dataclass
class Context:
    funnel: Funnel
    _cache: Dict[str, Any] = field(default_factory=dict)

    @property
    def doc(self):  # type: ignore[no-untyped-def]
        return self.funnel.document

    @cached_property
    def template_names(self) -> Tuple[str, ...]:
        """Email templates that exist on disk."""
        return tuple(templates.discover(self.funnel.template_dir))

    @cached_property
    def attribute_names(self) -> Tuple[str, ...]:
        return tuple(a.name for a in self.funnel.profile)

    def template(self, name: str) -> Optional[templates.Template]:
        key = f"template:{name}"
        if key not in self._cache:
            self._cache[key] = templates.load(self.funnel.template_dir, name, self.attribute_names)
        return self._cache[key]  # type: ignore[no-any-return]

    @cached_property
    def _send_index(self) -> Dict[str, Tuple[List[str], List[str]]]:
        """Template -> (purposes it is sent for, A/B variants it is sent with)."""
        index: Dict[str, Tuple[List[str], List[str]]] = {}
        for name, _path, purpose in self.sends:
            purposes, _ = index.setdefault(name, ([], []))
            if purpose not in purposes:
                purposes.append(purpose)
        for seq in self.funnel.sequences:
            for step in seq.steps:
                if step.send:
                    variants = index.setdefault(step.send, ([], []))[1]
                    variants.extend(v for v, _ in step.variants if v not in variants)
        return index

    def sample(self, purpose: str, variant: Optional[str]) -> Dict[str, Any]:
        key = f"sample:{purpose}:{variant}"
        if key not in self._cache:
            self._cache[key] = templates.sample_context(self.funnel, variant, purpose)
        return self._cache[key]  # type: ignore[no-any-return]

    def renders(self, name: str) -> List[Tuple[Optional[str], Any]]:
        """(variant, Rendered or the exception rendering raised) for each purpose and
        variant the funnel sends this template with (variant None when it has none)."""
        key = f"render:{name}"
        if key not in self._cache:
            purposes, variants = self._send_index.get(name, ([], []))
            out: List[Tuple[Optional[str], Any]] = []
            for purpose in sorted(purposes) or ["nurture"]:
                choices: List[Optional[str]] = list(sorted(variants)) or [None]
                for variant in choices:
                    try:
                        result: Any = templates.render(self.funnel.template_dir, name, self.sample(purpose, variant))
                    except Exception as exc:  # noqa: BLE001 - any render failure is a finding
                        result = exc
                    out.append((variant, result))
            self._cache[key] = out
        return self._cache[key]  # type: ignore[no-any-return]

    @cached_property
    def sends(self) -> List[Tuple[str, JsonPath, str]]:
        """(template, path of the reference, purpose) for every email the funnel sends.
        Purpose is the sequence kind, `delivery` for a lead magnet's delivery email, or
        `confirmation` for the confirmation email of its double opt-in."""
        out = []
        for seq in self.funnel.sequences:
            for step in seq.steps:
                if step.send:
                    out.append((step.send, step.path + ("send",), seq.kind))
        for magnet in self.funnel.lead_magnets:
            if magnet.delivers:
                out.append((magnet.delivers, magnet.path + ("delivers",), "delivery"))
            if magnet.double_opt_in:
                out.append((magnet.double_opt_in.confirm, magnet.double_opt_in.path + ("confirm",), "confirmation"))
        return out

    @cached_property
    def conditions(self) -> List[Condition]:
        """Every condition in the definition."""
        f = self.funnel
        out: List[Condition] = [n.when for n in f.personas + f.segments]
        if f.fit:
            out.append(f.fit.when)
        out.extend(r.when for r in f.scoring.fit)
        out.extend(t.when for t in f.transitions if t.when)
        for seq in f.sequences:
            if seq.when:
                out.append(seq.when)
            if seq.exit and seq.exit.when:
                out.append(seq.exit.when)
            for step in seq.steps:
                out.extend(c for c in (step.when, step.unless) if c)
        return out

    @cached_property
    def reachable_stages(self) -> Set[str]:
        """Stages a lead can reach: entered by a lead magnet or an entry (the first stage
        when there are neither: FNL311 reports that), then along transitions."""
        return self._reach({})

    @cached_property
    def stage_corrections(self) -> Dict[str, str]:
        """Names used as stages that are not stages, with the stage each probably means
        (the did-you-mean FNL204 gives)."""
        import difflib

        f = self.funnel
        named = [m.enters for m in f.lead_magnets] + [e.enters for e in f.entries]
        for t in f.transitions:
            named.extend(t.sources + (t.to,))
        out: Dict[str, str] = {}
        for name in named:
            if name not in f.stages and name not in out:
                guess = difflib.get_close_matches(name, f.stages, n=1, cutoff=0.5)
                if guess:
                    out[name] = guess[0]
        return out

    @cached_property
    def intended_reachable_stages(self) -> Set[str]:
        """The stages a lead could reach if every misspelt stage name meant its close match."""
        return self._reach(self.stage_corrections)

    def _reach(self, fix: Dict[str, str]) -> Set[str]:
        f = self.funnel
        start = {fix.get(m.enters, m.enters) for m in f.lead_magnets} | \
            {fix.get(e.enters, e.enters) for e in f.entries} or {f.stages[0]}
        seen = set(s for s in start if s in f.stages)
        frontier = list(seen)
        while frontier:
            stage = frontier.pop()
            for t in f.transitions:
                to = fix.get(t.to, t.to)
                if stage in (fix.get(s, s) for s in t.sources) and to in f.stages and to not in seen:
                    seen.add(to)
                    frontier.append(to)
        return seen

    @cached_property
    def sales_stages(self) -> Tuple[str, ...]:
        """Stages in which sales works the lead: from the earliest handoff stage up to,
        not including, the terminal stages."""
        f = self.funnel
        idx = [f.stage_index(h.stage) for h in f.handoff if f.stage_index(h.stage) >= 0]
        if not idx:
            return ()
        return tuple(s for s in f.stages[min(idx):] if s not in f.terminal_stages)

    def suppressing(self, stage: str) -> Set[str]:
        """Sequence kinds and names suppressed for a lead in `stage`: a handoff's
        suppression holds from its stage on (the same rule the compiler applies)."""
        f = self.funnel
        out: Set[str] = set()
        for h in f.handoff:
            if 0 <= f.stage_index(h.stage) <= f.stage_index(stage):
                out.update(h.suppress)
        return out

    def location_in_condition(self, cond: Condition, offset: int):  # type: ignore[no-untyped-def]
        return self.doc.expression_location(cond.path, offset)


def condition_names(cond: Condition) -> List[expr.Name]:
    return expr.names(cond.tree)
