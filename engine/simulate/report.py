"""`fnl simulate`'s report: text for a terminal, versioned JSON for machines, markdown for
a pull-request comment.

The text and markdown put the headline first (leads, then MQL, SQL and customers, as
counts and shares of the leads), then the rest of the figures, then the assumptions fnl
made. With several runs each number is the mean with its 95 % interval, and the report
says that the interval is simulation noise only.

The JSON contract (`FORMAT_VERSION`): `version`; `leads`; `stages` with, per stage, `leads`
(in it at the horizon, every lead counted once), `unsubscribed` (of those) and `reached`
(ever entered); `emails_sent` (every kind); `unsubscribes` (events); `runs`; with more
than one run every figure as `{mean, lo, hi}`. The rest of the figures follow under their
own keys. Keys are sorted and floats rounded to 6 decimals, so the same input and seed
give byte-identical JSON.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..state import iso
from ..terminal import escape, json_document
from . import Forecast, expect, tally
from .figures import Estimate, Figures, Num, Rate, Summary, mean_of, stage

FORMAT_VERSION = 1
FORMATS = ("text", "json", "markdown", "html")
NOISE = ("the intervals show simulation noise only (how much the figures move between runs with other "
         "seeds), not how uncertain the behaviour model's rates are")


# -- JSON -----------------------------------------------------------------------------------

def _value(v: Any) -> Any:
    if isinstance(v, Estimate):
        return {"mean": _round(v.mean), "lo": _round(v.lo), "hi": _round(v.hi)}
    if isinstance(v, float):
        return _round(v)
    return v


def _round(x: float) -> float:
    r = round(x, 6)
    return 0.0 if r == 0 else r  # no -0.0


def _rate(r: Rate) -> Dict[str, Any]:
    return {"value": _value(r.value), "lo": _value(r.lo), "hi": _value(r.hi)}


def data(fc: Forecast) -> Dict[str, Any]:
    """The report as JSON data (the contract above)."""
    f = _figures(fc)
    doc: Dict[str, Any] = {
        "version": FORMAT_VERSION,
        "funnel": f.funnel,
        "behavior": {"source": fc.behavior.source, "assumptions": list(fc.behavior.assumptions)},
        "seed": fc.seed,
        "runs": fc.runs,
        "start": iso(fc.start),
        "days": _value(fc.days),
        "leads": _value(f.leads),
        "stages": {s.name: {"leads": _value(s.leads), "unsubscribed": _value(s.unsubscribed),
                            "reached": _value(s.reached)} for s in f.stages},
        "reached_share": {s.name: _value(s.reached_share) for s in f.stages},
        "emails_sent": _value(f.emails.sent),
        "unsubscribes": _value(f.unsubscribes),
        "unsubscribed_leads": _value(f.unsubscribed_leads),
        "bounces": _value(f.bounces),
        "conversions": [{"from": c.source, "to": c.target, "reached_from": _value(c.reached_source),
                         "reached_both": _value(c.reached_both), "rate": _value(c.rate)} for c in f.conversions],
        "biggest_drop": {"from": f.biggest_drop[0], "to": f.biggest_drop[1]} if f.biggest_drop else None,
        "time_to": {t.stage: {"leads": _value(t.leads), "p50_days": _value(t.p50_days),
                              "p90_days": _value(t.p90_days)} for t in f.time_to},
        "emails": {"sent": _value(f.emails.sent), "per_lead_mean": _value(f.emails.per_lead_mean),
                   "per_lead_p95": _value(f.emails.per_lead_p95), "per_lead_max": _value(f.emails.per_lead_max),
                   "per_lead_sd": _value(f.emails.per_lead_sd),
                   "max_in_7_days": _value(f.emails.max_in_7_days),
                   "by_kind": {k: _value(n) for k, n in f.emails.by_kind}},
        "deferrals": {"quiet_hours": _value(f.deferrals.quiet_hours),
                      "frequency_cap": _value(f.deferrals.frequency_cap), "at": _value(f.deferrals.at),
                      "leads": _value(f.deferrals.leads)},
        "steps": [{"sequence": s.sequence or None, "step": s.step, "template": s.template, "sends": _value(s.sends),
                   "opens": _value(s.opens), "clicks": _value(s.clicks), "replies": _value(s.replies),
                   "unsubscribes": _value(s.unsubscribes)} for s in f.steps],
        "variants": [{"sequence": v.sequence, "step": v.step, "variant": v.variant, "template": v.template,
                      "sends": _value(v.sends), "opens": _value(v.opens), "clicks": _value(v.clicks),
                      "open_rate": _rate(v.open_rate), "click_rate": _rate(v.click_rate)} for v in f.variants],
        "weekly": {"start": iso(fc.start), "weeks": f.weekly.weeks,
                   "entered": {name: [_value(n) for n in counts] for name, counts in f.weekly.entered},
                   "handoffs": [_value(n) for n in f.weekly.handoffs]},
        "reps": [{"rep": r.rep, "handoffs": _value(r.handoffs), "per_week_mean": _value(r.per_week_mean),
                  "per_week_max": _value(r.per_week_max), "capacity": _value(r.capacity),
                  "weeks_over_capacity": _value(r.weeks_over_capacity), "sla_breaches": _value(r.sla_breaches)}
                 for r in f.reps],
        "sla_breaches": _value(f.sla_breaches),
        "rejected": _value(f.rejected),
    }
    if fc.expectations is not None:
        doc["expectations"] = expect.json_items(fc.expectations)
    if fc.summary is not None:
        doc["intervals"] = {"confidence": 0.95, "method": fc.summary.method, "seeds": list(fc.summary.seeds),
                            "meaning": NOISE}
    return doc


def render_json(fc: Forecast) -> str:
    return json_document(data(fc))


# -- numbers in words -----------------------------------------------------------------------

def _figures(fc: Forecast) -> Figures:
    return fc.summary.figures if fc.summary is not None else fc.figures


def count(v: Optional[Num]) -> str:
    if v is None:
        return "–"
    if isinstance(v, Estimate):
        return f"{v.mean:,.1f} ({v.lo:,.1f}–{v.hi:,.1f})"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.1f}"
    return f"{int(v):,}"


def pct(v: Optional[Num]) -> str:
    if v is None:
        return "–"
    if isinstance(v, Estimate):
        return f"{100 * v.mean:.1f} % ({100 * v.lo:.1f}–{100 * v.hi:.1f})"
    return f"{100 * v:.1f} %"


def days(v: Optional[Num]) -> str:
    if v is None:
        return "–"
    if isinstance(v, Estimate):
        return f"{v.mean:.1f} ({v.lo:.1f}–{v.hi:.1f})"
    return f"{v:.1f}"


def interval(r: Rate) -> str:
    if r.value is None:
        return "–"
    lo, hi = mean_of(r.lo), mean_of(r.hi)
    return f"{100 * (mean_of(r.value) or 0):.1f} % ({100 * (lo or 0):.1f}–{100 * (hi or 0):.1f})"


def _label(name: str) -> str:
    return name.upper() if name in ("mql", "sql") else name


def headline(fc: Forecast) -> str:
    f = _figures(fc)
    parts = [f"{_point(f.leads)} leads"]
    for name in f.headline:
        s = stage(f, name)
        if s is not None:
            plural = "s" if name not in ("mql", "sql") and mean_of(s.reached) != 1 else ""
            parts.append(f"{_point(s.reached)} {escape(_label(name))}{plural} ({_share(s.reached_share)})")
    return " → ".join(parts)


def _point(v: Num) -> str:
    """A count for the headline: the mean alone (the share beside it has the interval)."""
    return count(mean_of(v)) if isinstance(v, Estimate) else count(v)


def _share(v: Num) -> str:
    if isinstance(v, Estimate):
        return f"{100 * v.mean:.1f} %, 95 % interval {100 * v.lo:.1f}–{100 * v.hi:.1f} %"
    return pct(v)


def _drop(f: Figures) -> Optional[str]:
    if f.biggest_drop is None:
        return None
    c = next(c for c in f.conversions if (c.source, c.target) == f.biggest_drop)
    lost = 1 - (mean_of(c.rate) or 0)
    return (f"biggest drop-off: {escape(c.source)} → {escape(c.target)}: {100 * lost:.1f} % of the leads that "
            f"reached {escape(c.source)} never reach {escape(c.target)}")


def _title(fc: Forecast) -> str:
    f = _figures(fc)
    runs = f", {fc.runs} runs (seeds {fc.seed}–{fc.seed + fc.runs - 1})" if fc.runs > 1 else f", seed {fc.seed}"
    return f"Forecast for {escape(f.funnel)}: {fc.days:g} days from {iso(fc.start)[:10]}{runs}"


def _short_note(fc: Forecast) -> Optional[str]:
    """Why fewer leads than --leads asked for came in: arrivals run past the horizon."""
    got = mean_of(_figures(fc).leads) or 0
    if fc.leads_asked is None or got >= 0.9 * fc.leads_asked:
        return None
    return (f"--leads {fc.leads_asked:,} spreads arrivals over the behaviour model's arrival windows; "
            f"{_point(_figures(fc).leads)} of them arrived "
            f"within the {fc.days:g} days")


def _runs_note(fc: Forecast) -> str:
    method = fc.summary.method if fc.summary is not None else ""
    return (f"Each figure is the mean of {fc.runs} runs, with its 95 % interval in brackets ({method}); "
            f"{NOISE}.")


def _behaviour_line(fc: Forecast) -> str:
    if fc.behavior.source:
        return f"Behaviour model: {escape(fc.behavior.source)}"
    return "Behaviour model: none found beside the funnel; fnl's default assumptions (listed below)"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> List[str]:
    """Columns of names left-aligned, columns of figures right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    names = [i == 0 or not any(r[i][:1].isdigit() or r[i][:1] == "–" for r in rows) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return (indent + "  ".join(f"{c:<{w}}" if left else f"{c:>{w}}"
                                   for c, w, left in zip(cells, widths, names))).rstrip()

    return [line(header)] + [line(r) for r in rows]


def _sections(fc: Forecast) -> List[Tuple[str, List[str], List[List[str]]]]:
    """The report's tables: (title, header, rows), the same for text and markdown."""
    f = _figures(fc)
    out: List[Tuple[str, List[str], List[List[str]]]] = []
    out.append(("Stages", ["stage", "at the horizon", "of them unsubscribed", "ever reached", "share"],
                [[escape(s.name), count(s.leads), count(s.unsubscribed), count(s.reached), pct(s.reached_share)]
                 for s in f.stages]))
    out.append(("Conversion", ["from → to", "rate", "reached both", "reached from"],
                [[f"{escape(c.source)} → {escape(c.target)}", pct(c.rate), count(c.reached_both),
                  count(c.reached_source)] for c in f.conversions]))
    out.append(("Time from arrival, days", ["stage", "p50", "p90", "leads"],
                [[escape(t.stage), days(t.p50_days), days(t.p90_days), count(t.leads)] for t in f.time_to]))
    e, d = f.emails, f.deferrals
    out.append(("Emails", ["", ""], [
        ["sent", count(e.sent) + " (" + ", ".join(f"{escape(k)} {count(n)}" for k, n in e.by_kind) + ")"],
        ["per lead: mean, p95, max", f"{count(e.per_lead_mean)}, {count(e.per_lead_p95)}, {count(e.per_lead_max)}"],
        ["most to one lead in 7 days", count(e.max_in_7_days)],
        ["held back by quiet hours", count(d.quiet_hours)],
        ["held back by the frequency cap", count(d.frequency_cap)],
        ["held back until a step's at: time", count(d.at)],
        ["unsubscribes (events)", count(f.unsubscribes)],
        ["leads unsubscribed", count(f.unsubscribed_leads)],
        ["bounced", count(f.bounces)]]))
    sent = [s for s in f.steps if (mean_of(s.sends) or 0) > 0]
    out.append(("Sequence steps (steps that sent)", ["step", "template", "sends", "opens", "clicks", "replies",
                                                     "unsubscribes"],
                [[escape(f"{s.sequence}/{s.step}" if s.sequence else "double opt-in confirmation"
                         if s.step == tally.CONFIRMATION else "lead magnet delivery"), escape(s.template),
                  count(s.sends), count(s.opens), count(s.clicks), count(s.replies), count(s.unsubscribes)]
                 for s in sent]))
    if f.variants:
        out.append(("A/B variants (rates per send, 95 % Wilson interval)",
                    ["step", "variant", "sends", "open rate", "click rate"],
                    [[escape(f"{v.sequence}/{v.step}"), escape(v.variant), count(v.sends), interval(v.open_rate),
                      interval(v.click_rate)] for v in f.variants]))
    names = [name for name, _ in f.weekly.entered]
    weeks = []
    for i in range(f.weekly.weeks):
        week = [str(i + 1), iso(fc.start + i * 7 * 1440)[:10]]
        week += [count(series[i]) for _, series in f.weekly.entered]
        week.append(count(f.weekly.handoffs[i]))
        weeks.append(week)
    out.append(("Weekly volumes", ["week", "from"] + [escape(_label(n)) for n in names] + ["handoffs"], weeks))
    if f.reps:
        out.append(("Sales reps (first handoff of each lead)", ["rep", "handoffs", "per week", "busiest week",
                                                                 "capacity", "weeks over", "SLA breaches"],
                    [[escape(r.rep), count(r.handoffs), count(r.per_week_mean), count(r.per_week_max),
                      count(r.capacity) if r.capacity is not None else "–", count(r.weeks_over_capacity),
                      count(r.sla_breaches)] for r in f.reps]))
    return out


# -- text -----------------------------------------------------------------------------------

def render_text(fc: Forecast) -> str:
    f = _figures(fc)
    lines = [_title(fc), "", "  " + headline(fc)]
    drop = _drop(f)
    if drop:
        lines.append("  " + drop)
    short = _short_note(fc)
    if short:
        lines.append("  " + short)
    if fc.summary is not None:
        lines.append(f"  {_runs_note(fc)}")
    lines += ["", _behaviour_line(fc)]
    for title, header, rows in _sections(fc):
        lines += ["", title]
        if title == "Emails":
            width = max(len(r[0]) for r in rows)
            lines += [f"  {r[0]:<{width}}  {r[1]}" for r in rows]
        elif rows:
            lines += _table(header, rows)
        else:
            lines.append("  none")
    lines += _assumptions(fc, "  - ")
    if mean_of(f.rejected):
        lines += ["", f"Note: the engine refused {count(f.rejected)} simulated events; this is a bug in fnl."]
    lines += expect.text_lines(fc.expectations)
    return "\n".join(lines) + "\n"


def _assumptions(fc: Forecast, bullet: str) -> List[str]:
    if not fc.behavior.assumptions:
        return []
    where = "" if fc.behavior.source else " (write a *.behavior.yaml beside the funnel to replace them)"
    return ["", f"Assumptions{where}"] + [bullet + escape(a) for a in fc.behavior.assumptions]


# -- markdown -------------------------------------------------------------------------------

def _md(cell: str) -> str:
    return cell.replace("|", "\\|") or " "


def render_markdown(fc: Forecast) -> str:
    f = _figures(fc)
    lines = [f"### {_title(fc)}", "", f"**{headline(fc)}**", ""]
    drop = _drop(f)
    if drop:
        lines += [drop[0].upper() + drop[1:] + ".", ""]
    if fc.summary is not None:
        lines += [_runs_note(fc), ""]
    lines += [_behaviour_line(fc) + ".", ""]
    for title, header, rows in _sections(fc):
        lines += [f"#### {title}", ""]
        if not rows:
            lines += ["None.", ""]
            continue
        head = header if any(header) else ["figure", "value"]
        lines.append("| " + " | ".join(_md(h) for h in head) + " |")
        lines.append("|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(head))) + "|")
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
        lines.append("")
    extra = _assumptions(fc, "- ")
    if extra:
        lines += ["<details><summary>" + extra[1] + "</summary>", ""] + extra[2:] + ["", "</details>", ""]
    lines += expect.markdown_lines(fc.expectations)
    return "\n".join(lines).rstrip("\n") + "\n"


RENDERERS: Dict[str, Callable[[Forecast], str]] = {"text": render_text, "json": render_json,
                                                   "markdown": render_markdown}


def render(fc: Forecast, fmt: str) -> str:
    if fmt == "html":  # matplotlib is imported for this format only
        from .html import render_html
        return render_html(fc)
    return RENDERERS[fmt](fc)


__all__ = ["FORMATS", "FORMAT_VERSION", "RENDERERS", "data", "render", "render_json", "render_markdown",
           "render_text", "Summary"]
