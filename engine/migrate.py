"""Moving leads in flight from one plan to the next, by stable step ID.

The runtime applies this when a new plan is deployed, and `fnl plan` uses the same
rule to say what a change does to leads already in a sequence:

* a step that still exists (same ID) keeps its leads, who keep their due time;
* leads waiting on a removed step resume at the next step of the old order that
  still exists, at the time they were due; with none left, they finish the sequence;
* leads in a removed sequence leave it;
* leads in a removed stage move back to the nearest earlier stage that still exists.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

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
