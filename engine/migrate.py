"""Moving leads in flight from one plan to the next, by stable step ID.

The runtime applies this when a new plan is deployed, and `fnl plan` uses the same
rule to say what a change does to leads already in a sequence:

* a step that still exists (same ID) keeps its leads, who keep their due time;
* leads waiting on a removed step resume at the next step of the old order that
  still exists, at the time they were due; with none left, they finish the sequence;
* leads in a removed sequence leave it;
* leads in a removed stage move back to the nearest earlier stage that still exists.

What this rule cannot make right for a lead (a stored profile the new plan refuses, a
step the lead already passed put after its current one, ...) refuses the new plan:
`concerns`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Tuple

from .plan import Plan, Sequence
from .state import LeadState, Running


@dataclass(frozen=True)
class StepMove:
    """Where leads waiting on one old step go under the new plan."""

    sequence: str
    step: str
    outcome: str  # stays | resumes | finishes | exits
    target: Optional[str] = None


def step_move(old: Plan, new: Plan, sequence: str, step_id: str) -> StepMove:
    new_seq = new.sequence(sequence)
    if new_seq is None:
        return StepMove(sequence, step_id, "exits")
    new_ids = [s.id for s in new_seq.steps]
    if step_id in new_ids:
        return StepMove(sequence, step_id, "stays", step_id)
    old_seq = old.sequence(sequence)
    old_ids = [s.id for s in old_seq.steps] if old_seq else []
    after = old_ids[old_ids.index(step_id) + 1:] if step_id in old_ids else []
    target = next((sid for sid in after if sid in new_ids), None)
    if target is None:
        return StepMove(sequence, step_id, "finishes")
    return StepMove(sequence, step_id, "resumes", target)


def step_moves(old: Plan, new: Plan, sequence: str) -> Dict[str, StepMove]:
    """`step_move` for every step of one old sequence, in one pass over its steps."""
    old_seq = old.sequence(sequence)
    if old_seq is None:
        return {}
    new_seq = new.sequence(sequence)
    if new_seq is None:
        return {s.id: StepMove(sequence, s.id, "exits") for s in old_seq.steps}
    new_ids = {s.id for s in new_seq.steps}
    moves: Dict[str, StepMove] = {}
    target: Optional[str] = None  # the first step after this one that still exists
    for s in reversed(old_seq.steps):  # the first of repeated IDs is the one that counts, as in step_move
        if s.id in new_ids:
            moves[s.id] = StepMove(sequence, s.id, "stays", s.id)
        elif target is None:
            moves[s.id] = StepMove(sequence, s.id, "finishes")
        else:
            moves[s.id] = StepMove(sequence, s.id, "resumes", target)
        if s.id in new_ids:
            target = s.id
    return moves


def _index(seq: Sequence, step_id: str) -> int:
    return next(i for i, s in enumerate(seq.steps) if s.id == step_id)


def stage_move(old: Plan, new: Plan, stage: str) -> str:
    if new.stage(stage) is not None or not new.stages:
        return stage
    names = [s.name for s in old.stages]
    earlier = names[: names.index(stage)] if stage in names else []
    for candidate in reversed(earlier):
        if new.stage(candidate) is not None:
            return candidate
    return new.stages[0].name


def migrate(old: Plan, new: Plan, state: LeadState) -> Tuple[LeadState, Tuple[str, ...]]:
    """The lead's state under the new plan, and a note for everything that moved."""
    notes: List[str] = []
    running: List[Running] = []
    for run in state.running:
        move = step_move(old, new, run.sequence, run.step_id)
        if move.outcome == "exits":
            notes.append(f"left {run.sequence}: the sequence was removed")
        elif move.outcome == "finishes":
            notes.append(f"finished {run.sequence}: step {run.step_id} and every step after it were removed")
        else:
            seq = new.sequence(run.sequence)
            assert seq is not None and move.target is not None
            if move.outcome == "resumes":
                notes.append(f"{run.sequence}: step {run.step_id} was removed; resumes at {move.target}")
            running.append(replace(run, step_id=move.target, index=_index(seq, move.target)))
    stage = stage_move(old, new, state.stage)
    if stage != state.stage:
        notes.append(f"stage {state.stage} was removed; now in {stage}")
    return replace(state, running=tuple(running), stage=stage), tuple(notes)


# -- what a new plan cannot do to leads in flight ---------------------------------------------

@dataclass(frozen=True)
class Concern:
    """Something a new plan does to a lead in flight that `migrate` cannot make right
    (`refuses`: the plan is not deployed while any lead has it), or that is worth saying
    (the lead goes on, as stated). Leads with the same `key` have the same concern; the
    reason and fix are said of them all."""

    key: str
    refuses: bool
    reason: str  # of the leads: "hold a value of profile attribute `role`, which ..."
    fix: str  # what to change in the new definition ("" for what is only said)


def concerns(old: Plan, new: Plan) -> Callable[[LeadState], Tuple[Concern, ...]]:
    """The check of one lead's state (as the old plan left it) against the new plan:

    * a stored profile the new plan's attributes refuse (an attribute removed, its type,
      values or range narrowed, a new required one) stops the deploy: the engine checks
      the whole profile on every update, so such a lead could never update it again, and
      conditions would read values the definition no longer declares;
    * a lead in a removed stage with no earlier stage left to move back to stops it:
      the only other stage would be a later one, entered with no transition, handoff or
      CRM update;
    * a lead waiting on a step after which the new order puts a step it already passed
      stops it: it would get that step again;
    * a decay `window` the old plan did not have stops it for leads with a score: the
      window counts the points earned inside it, and the old plan kept none, so every
      stored score would drop to 0;
    * an open SLA of a handoff the new plan removes goes on (it is met or breached as
      the rep was promised), and a lead waiting on a step whose kind changed under the
      same ID does what the step does now: both are said, not refused.

    Everything else carries over: scores (new points, thresholds and decay factors apply
    from then on), owners, consent, sequences finished, and the rest `migrate` moves."""
    declared = {a.name: a for a in new.profile}
    single = {a.name: replace(new, profile=(a,)) for a in new.profile}  # one attribute, checked alone
    old_window = old.scoring.decay is not None and old.scoring.decay.window_minutes is not None
    new_window = new.scoring.decay is not None and new.scoring.decay.window_minutes is not None
    from .core import validate_profile

    def check(state: LeadState) -> Tuple[Concern, ...]:
        out: List[Concern] = []
        profile = dict(state.profile)
        for key in profile:
            if key not in declared and key != "email":
                out.append(Concern(f"profile:{key}", True, f"hold a value of profile attribute `{key}`, which the "
                                   f"new plan removes (a profile that no longer validates can never be updated)",
                                   f"keep `{key}` in the profile while leads hold it"))
        for name, attribute in declared.items():
            value = profile.get(name)
            problem = validate_profile(single[name], {} if value is None else {name: value})
            if problem is not None:
                fix = (f"make `{name}` optional (required: false)" if value is None else
                       f"let `{name}` accept the values stored, as the old plan did")
                out.append(Concern(f"profile:{name}", True, f"hold a profile the new plan refuses: {problem}", fix))
        if new.stage(state.stage) is None and new.stages:
            names = [s.name for s in old.stages]
            earlier = names[: names.index(state.stage)] if state.stage in names else []
            if not any(new.stage(n) is not None for n in earlier):
                out.append(Concern(f"stage:{state.stage}", True,
                                   f"are in stage {state.stage}, which the new plan removes, with no earlier stage "
                                   f"left to move them back to",
                                   f"keep stage {state.stage} while leads are in it"))
        for run in state.running:
            move = step_move(old, new, run.sequence, run.step_id)
            old_seq, new_seq = old.sequence(run.sequence), new.sequence(run.sequence)
            if move.target is None or old_seq is None or new_seq is None:
                continue
            old_ids = [s.id for s in old_seq.steps]
            passed = set(old_ids[: old_ids.index(run.step_id)]) if run.step_id in old_ids else set()
            target = _index(new_seq, move.target)
            again = [s.id for s in new_seq.steps[target + 1:] if s.id in passed]
            if again:
                out.append(Concern(f"order:{run.sequence}:{move.target}", True,
                                   f"wait on {run.sequence}/{move.target}, and the new plan puts {again[0]}, which "
                                   f"they already passed, after it: they would get it again",
                                   f"keep the steps of {run.sequence} in their order, or give the step moved "
                                   f"earlier an id key of its own in {run.sequence}'s steps, e.g. "
                                   f"`- {{id: {move.target}-2, wait: ..., send: ...}}`: leads past its new place "
                                   f"then skip it"))
            was = old_seq.steps[old_ids.index(run.step_id)] if run.step_id in old_ids else None
            now = new_seq.steps[target]
            if move.outcome == "stays" and was is not None and was.action != now.action:
                out.append(Concern(f"kind:{run.sequence}:{run.step_id}", False,
                                   f"wait on {run.sequence}/{run.step_id}, which was a {was.action} step and is now "
                                   f"a {now.action} step: they do what it does now", ""))
        if new_window and not old_window and state.score:
            out.append(Concern("decay:window", True,
                               "have a score the new decay cannot carry: its `window` counts the points earned "
                               "inside it, and the old plan kept none, so the stored scores would drop to 0",
                               "deploy the decay without `window` (or start the windowed plan on a new database)"))
        if state.sla_deadline is not None and new.handoff_for(state.sla_stage or "") is None:
            out.append(Concern(f"sla:{state.sla_stage}", False,
                               f"keep the open SLA of handoff {state.sla_stage}, which the new plan removes: it is "
                               f"met or breached as the owner was promised", ""))
        return tuple(out)

    return check
