"""Leads off the daily grid, as columns: each lead advances from its own next event.

`vector` runs a cohort day by day when every lead lives on a daily grid. A funnel whose
leads act at any minute (the behaviour model's `timing.day: spread`, quiet hours and a
frequency cap that hold sends back, CRM reactions after a delay, handoff SLAs, steps that
wait part of a day) runs here instead, with the same `vector.Engine` rules: leads are
independent of each other (but for the round-robin turns of handoffs, which
`tally.settle` gives afterwards, in engine order), so a lead's items can be taken in its
own order without looking at anyone else's clock. Each round takes, for every lead that
has anything left before the horizon, its next item, exactly as `run` (the per-lead
simulator, through `engine.drive`) orders them: the engine's clock at a step's due
minute, or the SLA's minute after its deadline, comes before the lead's events of that
minute; events go by (minute, second, the order they were queued in). The leads of a
round are then stepped together, grouped by what their item is:

- the clock: catching up (decay, SLA breach, due steps, with quiet hours and the cap
  holding sends back) and the settling that follows;
- the opt-in that creates the lead;
- a reaction to an email (bounce, unsubscribe, open, click, reply), queued when the
  email went out with the delays `run._Loop.on_send` draws;
- a candidate day's website visit (`draws.Gaps`), in the lead's active hours;
- a CRM event from the behaviour model's reactions (dropped, as `run` drops it, when
  the lead has left the stage the reaction waited on).

Every draw is `run`'s own key, so the tally is the per-lead simulator's, byte for byte;
`tests/test_simulate_vector.py` holds the two to that and replays these events through
`engine.drive`.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .. import state as st
from .behavior import DAY, Delay, Reaction
from .cohort import Cohort
from .draws import below, column_to_unit, fold_column, _word
from .run import SECOND_BOUNCE, SECOND_REPLY, SECOND_VISIT
from .tally import WEEK
from .vector import (_BOUNCED, _CLICK, _CRM, _NEVER, _NONE, _OPEN, _OPTIN, _REPLY, _UNSUB, _VISIT, Engine, Kit,
                     Now, _column)
from . import tally as tl

_SEQ_BITS = 24  # a lead's items in the order they were queued: up to 16M each
_SECOND_SHIFT = _SEQ_BITS
_MINUTE_SHIFT = 32


class Pending:
    """Each row's queued items (what its synthetic lead will do), in a few slots per row
    (more when a row needs them): the sort key (minute, second, queue order) packed in
    one integer, what the item is, and two numbers that go with it."""

    def __init__(self, n: int, slots: int = 8) -> None:
        self.key = np.full((n, slots), _NEVER, dtype=np.int64)
        self.kind = np.zeros((n, slots), dtype=np.int64)
        self.detail = np.zeros((n, slots), dtype=np.int64)
        self.aux = np.zeros((n, slots), dtype=np.int64)
        self.seq = np.zeros(n, dtype=np.int64)

    def push(self, rows: np.ndarray, minute: np.ndarray, second: np.ndarray, kind: int, detail: Any, aux: Any
             ) -> None:
        """Queue one item for each of `rows` (distinct)."""
        if rows.shape[0] == 0:
            return
        free = self.key[rows] == _NEVER
        has = free.any(axis=1)
        if not has.all():
            self._grow()
            free = self.key[rows] == _NEVER
        slot = free.argmax(axis=1)
        seq = self.seq[rows]
        self.seq[rows] = seq + 1
        self.key[rows, slot] = (minute << _MINUTE_SHIFT) | (second << _SECOND_SHIFT) | seq
        self.kind[rows, slot] = kind
        self.detail[rows, slot] = detail
        self.aux[rows, slot] = aux

    def _grow(self) -> None:
        n, slots = self.key.shape
        for name in ("key", "kind", "detail", "aux"):
            old = getattr(self, name)
            new = np.full((n, slots * 2), _NEVER if name == "key" else 0, dtype=np.int64)
            new[:, :slots] = old
            setattr(self, name, new)

    def head(self, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Each row's next item: (its slot, its key; _NEVER for none)."""
        keys = self.key[rows]
        slot = keys.argmin(axis=1)
        return slot, keys[np.arange(rows.shape[0]), slot]


class Rounds(Engine):
    """`vector.Engine` off the daily grid: items queued per lead, taken in rounds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        n = self.n
        self.pending = Pending(n)
        self.cur_min = np.full(n, -1, dtype=np.int64)  # the minute and second of each row's step being applied
        self.cur_sec = np.zeros(n, dtype=np.int64)
        self.created = np.zeros(n, dtype=bool)
        behavior = self.k.behavior
        self.timing = behavior.timing
        self.on_stage_reactions: Dict[int, List[Reaction]] = {}
        self.on_event_reactions: Dict[int, List[Reaction]] = {}
        for reaction in behavior.crm:
            if reaction.after_stage:
                code = self.k.plan.stage_index(reaction.after_stage)
                self.on_stage_reactions.setdefault(code, []).append(reaction)
            if reaction.after_event and reaction.after_event in self.k.crm:
                code = _CRM + self.k.crm.index(reaction.after_event)
                self.on_event_reactions.setdefault(code, []).append(reaction)
        visits = behavior.visits
        self.visit_low = below(visits.daily / self.gaps.most) if self.gaps.most > 0 else None
        self.visit_high = below(visits.after_click_daily / self.gaps.most) if self.gaps.most > 0 else None
        self.click_days = visits.after_click_minutes // DAY
        self.page_totals: List[float] = []
        total = 0.0
        for _page, share in visits.pages:
            total += share
            self.page_totals.append(total)

    # -- queueing what the synthetic leads do (`run._Loop.push`) ---------------------------
    def push(self, rows: np.ndarray, minute: np.ndarray, second: int, kind: int, detail: Any = 0, aux: Any = 0
             ) -> np.ndarray:
        """Queue an item per row at `minute`; nothing at or after the horizon. What a lead
        does in reply to the step being applied, in that step's minute, is stamped no
        earlier than that step's second. Returns which rows were queued."""
        fine = minute < self.end
        if not fine.all():
            rows, minute = rows[fine], minute[fine]
            detail = detail[fine] if isinstance(detail, np.ndarray) else detail
            aux = aux[fine] if isinstance(aux, np.ndarray) else aux
        seconds = np.full(rows.shape[0], second, dtype=np.int64)
        same = minute == self.cur_min[rows]
        if same.any():
            seconds[same] = np.maximum(seconds[same], self.cur_sec[rows[same]])
        self.pending.push(rows, minute, seconds, kind, detail, aux)
        return fine

    def keyed(self, prefix: Tuple[Any, ...], *parts: Any) -> np.ndarray:
        """`Draws.u(*prefix, *parts)` where a part may be a column (one value per row)."""
        state: Any = self.draws.state(*prefix)
        n = next(p.shape[0] for p in parts if isinstance(p, np.ndarray))
        states = np.full(n, state, dtype=np.uint64)
        for part in parts:
            words = part.astype(np.int64).view(np.uint64) if isinstance(part, np.ndarray) \
                else np.uint64(_word(part))
            states = fold_column(states, np.broadcast_to(words, states.shape))
        return column_to_unit(states)

    @staticmethod
    def delays(delay: Delay, x: np.ndarray) -> np.ndarray:
        """`Draws.delay` for a column of uniform draws."""
        if delay.kind == "fixed":
            return np.full(x.shape[0], delay.low, dtype=np.int64)
        if delay.kind == "uniform":
            high = delay.high if delay.high is not None else delay.low
            return delay.low + (x * (high - delay.low + 1)).astype(np.int64)
        with np.errstate(divide="ignore"):
            v = -(delay.mean or 0) * np.log1p(-x)
        minutes = np.rint(v).astype(np.int64)
        # Where a last-bit difference between NumPy's logarithm and Python's could round
        # the other way, Python's decides.
        frac = v - np.floor(v)
        for i in np.nonzero(np.abs(frac - 0.5) < 1e-6)[0].tolist():
            minutes[i] = int(round(-(delay.mean or 0) * math.log1p(-float(x[i]))))
        return np.minimum(minutes, delay.high) if delay.high is not None else minutes

    # -- the engine's hooks --------------------------------------------------------------
    def count_week(self, rows: np.ndarray, kind: str) -> None:
        pass  # off the grid, the week's most is worked out from the sends (`most_in_week`)

    def most_in_week(self, rows: np.ndarray, minutes: np.ndarray, marketing: bool) -> int:
        """`tally.most_in_window` of each row's sends, the most over the rows."""
        if rows.shape[0] == 0:
            return 0
        key = (rows.astype(np.int64) << 40) + (minutes - self.start + WEEK)
        key.sort()
        first = np.searchsorted(key, key - WEEK + 1, side="left")
        return int((np.arange(key.shape[0]) - first + 1).max())

    def clicked(self, rows: np.ndarray, minute: Now) -> None:
        pass  # the visit reads the engine's own `email.clicked` fact

    def first_visit(self, rows: np.ndarray, minute: Now) -> None:
        pass  # queued with the opt-in (`start`)

    def later(self, rows: np.ndarray, masks: Dict[int, np.ndarray], detail: int, key: Tuple[Any, ...],
              minute: Now) -> None:
        """`run._Loop.on_send`: queue each row's reaction to the email at its own time; a
        mask keeps only the rows whose event fell before the horizon."""
        t = _column(minute, rows.shape[0])
        spread = not self.timing.same_minute
        lead = self.lead[rows]
        prefix = ("email",) + tuple(key)
        bounce = masks[_BOUNCED]
        if bounce.any():
            b = np.nonzero(bounce)[0]
            masks[_BOUNCED][b] = self.push(rows[b], t[b] + (1 if spread else 0), SECOND_BOUNCE, _BOUNCED, detail)
        rest = np.nonzero(masks[_UNSUB] | masks[_OPEN])[0]
        if rest.shape[0] == 0:
            return
        opened_at = t[rest] if not spread else \
            t[rest] + self.delays(self.timing.open_delay, self.keyed(prefix + ("open-delay",), lead[rest]))
        unsub = masks[_UNSUB][rest]
        if unsub.any():
            u = rest[unsub]
            masks[_UNSUB][u] = self.push(rows[u], opened_at[unsub], SECOND_REPLY, _UNSUB, detail)
        opened = masks[_OPEN][rest]
        if not opened.any():
            return
        o = rest[opened]
        at = opened_at[opened]
        pushed = self.push(rows[o], at, SECOND_REPLY, _OPEN, detail)
        masks[_OPEN][o] = pushed
        masks[_CLICK][o] &= pushed
        masks[_REPLY][o] &= pushed
        for what, delay, word in ((_CLICK, self.timing.click_delay, "cd"), (_REPLY, self.timing.reply_delay, "rd")):
            hit = masks[what][o]
            if not hit.any():
                continue
            h = o[hit]
            when = at[hit] if not spread else at[hit] + self.delays(delay, self.keyed(prefix + (word,), lead[h]))
            masks[what][h] = self.push(rows[h], when, SECOND_REPLY, what, detail)

    def on_stage(self, rows: np.ndarray, stage: int, minute: Now) -> None:
        for reaction in self.on_stage_reactions.get(stage, ()):
            self.react(rows, reaction, _column(minute, rows.shape[0]), f"stage:{self.k.stages[stage]}")

    def react(self, rows: np.ndarray, reaction: Reaction, minute: np.ndarray, trigger: str) -> None:
        """`run._Loop.react`: at most one of a CRM reaction's outcomes, after its delay."""
        if rows.shape[0] == 0:
            return
        lead = self.lead[rows]
        prefix = ("crm", reaction.name, trigger)
        x = self.keyed(prefix, minute, lead)
        totals, total = [], 0.0
        for outcome in reaction.outcomes:
            total += outcome.probability
            totals.append(total)
        picked = np.searchsorted(np.asarray(totals), x, side="right")  # the first total above x
        guard = self.k.plan.stage_index(reaction.after_stage) if reaction.after_stage else -1
        for i, outcome in enumerate(reaction.outcomes):
            sel = np.nonzero(picked == i)[0]
            if sel.shape[0] == 0 or outcome.event not in self.k.crm:
                continue
            wait = self.delays(outcome.delay, self.keyed(prefix, minute[sel], "delay", lead[sel]))
            self.push(rows[sel], minute[sel] + wait, SECOND_REPLY, _CRM + self.k.crm.index(outcome.event), -1, guard)

    # -- visits (`run._Loop.visit`) ---------------------------------------------------------
    def visit_minute(self, rows: np.ndarray, day: np.ndarray) -> np.ndarray:
        """`run._Loop._visit_minute`: when on its `day` (from its arrival's local date) a
        lead may visit."""
        arrived = self.cohort.arrives[rows]
        if self.timing.same_minute:
            return arrived + day * DAY
        hours = self.timing.hours
        within = hours.start + (self.keyed(("visit-time",), self.lead[rows], day) * hours.minutes).astype(np.int64)
        zones, tz = self.zones()
        at = zones.on_day(arrived, day, within % DAY, tz[rows]) + np.where(within >= DAY, DAY, 0)
        return np.maximum(arrived, at)

    def queue_visit(self, rows: np.ndarray, day: np.ndarray, n: np.ndarray) -> None:
        # Past the horizon (a day after the arrival's, whatever the timezone) nothing is queued.
        reach = (day <= self.gaps.longest) & (self.cohort.arrives[rows] + (day - 1) * DAY < self.end)
        if not reach.all():
            rows, day, n = rows[reach], day[reach], n[reach]
        if rows.shape[0]:
            self.push(rows, self.visit_minute(rows, day), SECOND_VISIT, _VISIT, n, day)

    def lead_day(self, rows: np.ndarray, minute: np.ndarray) -> np.ndarray:
        """The day of `minute` counted from the lead's arrival day (0), in its timezone."""
        arrived = self.cohort.arrives[rows]
        if self.timing.same_minute:
            return (minute - arrived) // DAY
        zones, tz = self.zones()
        return zones.ordinal_days(minute, tz[rows]) - zones.ordinal_days(arrived, tz[rows])

    def visit_day(self, rows: np.ndarray, minute: np.ndarray, day: np.ndarray, n: np.ndarray) -> None:
        """A candidate day's visit (`run._Loop.visit`), then the lead's next candidate day."""
        alive = self.created[rows] & ~self.unsub[rows]  # never created, or gone for good: no more visits
        rows, minute, day, n = rows[alive], minute[alive], day[alive], n[alive]
        if rows.shape[0] == 0:
            return
        visit_state, page_state, gap_state = self.visit_states()
        ok = self.visit_stages[self.stage[rows]]
        clicked = self.fact("email.clicked")[rows]
        recent = clicked != _NONE
        if recent.any():
            r = np.nonzero(recent)[0]
            recent[r] = self.lead_day(rows[r], clicked[r]) > day[r] - self.click_days
        limit = np.where(recent, np.uint64(self.visit_high or 0), np.uint64(self.visit_low or 0))
        ok &= limit != 0
        hit = ok & (self.draws.folded(visit_state[rows], day) <= limit)
        if hit.any():
            r, d = rows[hit], day[hit]
            page = np.full(r.shape[0], -1, dtype=np.int64)
            if self.page_totals:
                x = self.draws.then(page_state[r], d)
                picked = np.searchsorted(np.asarray(self.page_totals), x, side="right")
                page = np.where(picked < len(self.page_totals), picked, -1)
            self.step_at(r, minute[hit], SECOND_VISIT)
            self.apply(_VISIT, r, page, minute[hit], SECOND_VISIT)
        following = day + self.gaps.gaps(self.draws.then(gap_state[rows], n + 1))
        self.queue_visit(rows, following, n + 1)

    # -- the rounds -------------------------------------------------------------------------
    def step_at(self, rows: np.ndarray, minute: np.ndarray, second: Any) -> None:
        self.cur_min[rows] = minute
        self.cur_sec[rows] = second

    def clock(self, rows: np.ndarray) -> np.ndarray:
        """`drive.next_due` of each row: its earliest due step, or the minute after its SLA deadline."""
        out = np.full(rows.shape[0], _NEVER, dtype=np.int64)
        for s in range(self.due_at.shape[0]):
            np.minimum(out, self.due_at[s][rows], out=out)
        if self.k.sla:
            deadline = self.sla_deadline[rows]
            late = deadline != _NONE
            out[late] = np.minimum(out[late], deadline[late] + 1)
        return out

    def start_leads(self) -> None:
        """Every lead's opt-in at its arrival, and its first candidate day for a visit."""
        rows = np.arange(self.n)
        arrives = self.cohort.arrives.astype(np.int64)
        self.push(rows, arrives, 0, _OPTIN)
        if self.gaps.most > 0:
            first = self.gaps.gaps(self.draws.column(("visit-gap",), self.lead, 0)) - 1
            self.queue_visit(rows, first, np.zeros(self.n, dtype=np.int64))

    def run(self) -> None:
        self.start_leads()
        active = np.arange(self.n)
        end = self.end
        for _ in range(10_000_000):
            if active.shape[0] == 0:
                return
            due = self.clock(active)
            slot, key = self.pending.head(active)
            at = np.where(key == _NEVER, _NEVER, key >> _MINUTE_SHIFT)
            tick = (due <= at) & (due < end)
            event = ~tick & (at < end)
            if tick.any():
                r, m = active[tick], due[tick]
                self.step_at(r, m, 0)
                self.tick(r, m)
            if event.any():
                r, s, k = active[event], slot[event], key[event]
                kinds = self.pending.kind[r, s]
                details = self.pending.detail[r, s]
                aux = self.pending.aux[r, s]
                self.pending.key[r, s] = _NEVER
                minutes = k >> _MINUTE_SHIFT
                seconds = (k >> _SECOND_SHIFT) & 0xFF
                for kind in np.unique(kinds).tolist():
                    sel = kinds == kind
                    self.dispatch(kind, r[sel], minutes[sel], seconds[sel], details[sel], aux[sel])
            active = active[tick | event]
        raise AssertionError("the rounds did not end")  # pragma: no cover

    def dispatch(self, kind: int, rows: np.ndarray, minute: np.ndarray, second: np.ndarray, detail: np.ndarray,
                 aux: np.ndarray) -> None:
        if kind == _OPTIN:
            self.step_at(rows, minute, second)
            self.created[self.create(rows, minute)] = True
        elif kind == _VISIT:
            self.visit_day(rows, minute, aux, detail)
        elif kind >= _CRM:
            # Dropped when the lead has left the stage the reaction waited on.
            stays = (aux < 0) | (self.stage[rows] == aux)
            rows, minute, second, detail = rows[stays], minute[stays], second[stays], detail[stays]
            if rows.shape[0] == 0:
                return
            self.step_at(rows, minute, second)
            self.apply(kind, rows, detail, minute, second)
            for reaction in self.on_event_reactions.get(kind, ()):
                self.react(rows, reaction, minute, f"after:{self.k.crm[kind - _CRM]}")
        else:
            self.step_at(rows, minute, second)
            self.apply(kind, rows, detail, minute, second)


def run_chunk(k: Kit, cohort: Cohort, seed: int, start: int, end: int,
              log: Optional[List[st.Event]] = None) -> Tuple[tl.Tally, Rounds]:
    """Simulate one chunk of a run's leads, each from its own next item."""
    from .vector import tally_of

    e = Rounds(k, cohort, seed, start, end, log)
    e.run()
    return tally_of(e, e.created, start, end), e
