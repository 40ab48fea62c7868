"""`fnl simulate --format html`: the forecast as one self-contained HTML page.

The page holds the text report's headline, tables and assumptions, and three charts drawn
by matplotlib to inline SVG: the funnel (leads per stage at the horizon and ever reached),
the weekly volumes (entries into the headline stages, and handoffs) and the time from
arrival to each stage (p50 and p90 bars). It needs nothing else to open: no network, no
scripts, no fonts beyond the browser's own (the charts' text is SVG text), and a
Content-Security-Policy that forbids loading anything.

The same forecast gives byte-identical HTML: matplotlib draws with its default style (not
the user's matplotlibrc), a fixed `svg.hashsalt` per chart for the SVG's IDs, and no date in
the SVG metadata. Every piece of user text (funnel, stage, template, rep and file names) is
HTML-escaped; matplotlib escapes the charts' labels itself, and `$` is quoted so that a name
is never read as mathtext.

matplotlib is imported here only, and this module only for `--format html`, so no other
command pays for it at start-up.
"""
from __future__ import annotations

import html
import io
from typing import Any, List, Optional, Sequence

from . import Forecast
from .figures import Estimate, Figures, Num, mean_of
from .report import (_assumptions, _behaviour_line, _drop, _figures, _label, _runs_note, _sections, _short_note,
                     _title, count, headline)

# Colour-blind-safe colours (Okabe-Ito), fixed so the page looks the same everywhere.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
GREY = "#9aa5b1"

STYLE = """\
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2933;
margin:0 auto;max-width:1040px;padding:24px}
h1{font-size:1.45em;margin:0 0 .6em}h2{font-size:1.15em;margin:1.6em 0 .5em}
.headline{font-size:1.2em;font-weight:600}.note{color:#52606d}
table{border-collapse:collapse;margin:.3em 0 1em}th,td{padding:3px 10px;border-bottom:1px solid #e4e7eb}
th{text-align:left;background:#f5f7fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}figcaption{color:#52606d;font-size:.9em}svg{max-width:100%;height:auto}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:8px 24px}
"""
# Nothing may be fetched: no scripts, no images, no fonts; only the inline style.
CSP = "default-src 'none'; style-src 'unsafe-inline'"


def e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _mpl_text(text: str) -> str:
    """A label as matplotlib shows it literally (a `$` would start mathtext)."""
    return str(text).replace("$", r"\$")


def _err(values: Sequence[Optional[Num]]) -> Optional[List[List[float]]]:
    """Error bars (below, above the mean) when the figures are Estimates of several runs."""
    if not any(isinstance(v, Estimate) for v in values):
        return None
    lo, hi = [], []
    for v in values:
        if isinstance(v, Estimate):
            lo.append(max(v.mean - v.lo, 0.0))
            hi.append(max(v.hi - v.mean, 0.0))
        else:
            lo.append(0.0)
            hi.append(0.0)
    return [lo, hi]


def _means(values: Sequence[Optional[Num]]) -> List[float]:
    return [mean_of(v) or 0.0 for v in values]


class _Charts:
    """matplotlib, imported on first use, with its default style whatever the user's
    matplotlibrc says, drawing each chart to SVG text."""

    def __init__(self) -> None:
        import matplotlib
        from matplotlib.backends.backend_svg import FigureCanvasSVG
        from matplotlib.figure import Figure

        self.mpl, self.canvas, self.figure = matplotlib, FigureCanvasSVG, Figure

    def svg(self, name: str, draw: Any, height: float) -> str:
        mpl = self.mpl
        with mpl.rc_context():
            mpl.rcdefaults()
            mpl.rcParams.update({
                "svg.hashsalt": f"fnl-{name}",  # the SVG's IDs: fixed, and distinct per chart on the page
                "svg.fonttype": "none",          # text as text: the browser's font, no glyph definitions
                "font.size": 10.5,
                "axes.spines.top": False,
                "axes.spines.right": False,
                "axes.prop_cycle": mpl.cycler(color=COLOURS),
            })
            fig = self.figure(figsize=(6.4, height), dpi=100, layout="constrained")
            self.canvas(fig)
            draw(fig.add_subplot())
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None,
                                                    "Type": None})
        text = buf.getvalue()
        # The SVG element alone: the XML declaration and the DOCTYPE do not belong in HTML.
        text = text[text.index("<svg"):]
        return text.replace("<svg ", f'<svg role="img" aria-labelledby="chart-{name}" ', 1).rstrip() + "\n"


def _legend(ax: Any, columns: int) -> None:
    """The legend above the plot, where it never hides a bar or a line."""
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=columns, frameon=False, borderaxespad=0.2)


def _whole_numbers() -> Any:
    """Whole numbers on a count axis (one run's counts are whole)."""
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _funnel_chart(f: Figures) -> Any:
    names = [_mpl_text(_label(s.name)) for s in f.stages]
    reached = [s.reached for s in f.stages]
    here = [s.leads for s in f.stages]

    def draw(ax: Any) -> None:
        y = list(range(len(names)))
        h = 0.38
        ax.barh([i - h / 2 for i in y], _means(reached), height=h, xerr=_err(reached), color=COLOURS[0],
                label="ever reached", capsize=3)
        ax.barh([i + h / 2 for i in y], _means(here), height=h, xerr=_err(here), color=COLOURS[1],
                label="at the horizon", capsize=3)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlabel("leads")
        _legend(ax, 2)
        ends = [v.hi if isinstance(v, Estimate) else mean_of(v) or 0.0 for v in reached]  # past the error bar
        top = max(ends + [0.0])
        for i, (v, end) in enumerate(zip(_means(reached), ends)):
            ax.annotate(count(round(v, 1)), (end, i - h / 2), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=8, color="#3e4c59")
        ax.set_xlim(0, top * 1.12 if top else 1)

    return draw


def _weekly_chart(fc: Forecast, f: Figures) -> Any:
    weeks = list(range(1, f.weekly.weeks + 1))
    series = [(_mpl_text(_label(name)), counts) for name, counts in f.weekly.entered]
    series.append(("handoffs", f.weekly.handoffs))

    def draw(ax: Any) -> None:
        for i, (name, counts) in enumerate(series):
            values = _means(counts)
            ax.plot(weeks, values, marker="o", markersize=3, linewidth=1.6, color=COLOURS[i % len(COLOURS)],
                    label=name, linestyle="--" if name == "handoffs" else "-")
            err = _err(counts)
            if err is not None:
                ax.fill_between(weeks, [v - lo for v, lo in zip(values, err[0])],
                                [v + hi for v, hi in zip(values, err[1])], color=COLOURS[i % len(COLOURS)],
                                alpha=0.15, linewidth=0)
        ax.set_xlabel("week from the start")
        ax.set_ylabel("leads")
        ax.set_ylim(bottom=0)
        if weeks:
            ax.set_xlim(0.5, len(weeks) + 0.5)
        if not any(_err(counts) for _, counts in series):
            ax.yaxis.set_major_locator(_whole_numbers())
        _legend(ax, min(len(series), 4))

    return draw


def _time_chart(f: Figures) -> Any:
    rows = [t for t in f.time_to if t.p50_days is not None]

    def draw(ax: Any) -> None:
        if not rows:
            ax.text(0.5, 0.5, "no lead reached a later stage", ha="center", va="center", transform=ax.transAxes,
                    color="#52606d")
            ax.set_xticks([])
            ax.set_yticks([])
            return
        names = [_mpl_text(_label(t.stage)) for t in rows]
        y = list(range(len(rows)))
        h = 0.38
        p50 = [t.p50_days for t in rows]
        p90 = [t.p90_days for t in rows]
        ax.barh([i - h / 2 for i in y], _means(p50), height=h, xerr=_err(p50), color=COLOURS[2], label="p50",
                capsize=3)
        ax.barh([i + h / 2 for i in y], _means(p90), height=h, xerr=_err(p90), color=COLOURS[3], label="p90",
                capsize=3)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlabel("days from arrival")
        _legend(ax, 2)

    return draw


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    out = [f"<h2>{e(title)}</h2>"]
    if not rows:
        return out + ['<p class="note">None.</p>']
    numeric = [i > 0 and all(r[i][:1].isdigit() or r[i][:1] in "–-" for r in rows) for i in range(len(header))]
    out.append("<table>")
    if any(header):
        out.append("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f'<td class="num">{e(c)}</td>' if numeric[i] else f"<td>{e(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return out


def render_html(fc: Forecast) -> str:
    """The forecast as one HTML page that opens offline; byte-identical for the same forecast."""
    f = _figures(fc)
    charts = _Charts()
    title = _title(fc)
    body: List[str] = [f"<h1>{e(title)}</h1>", f'<p class="headline">{e(headline(fc))}</p>']
    for note in (_drop(f), _short_note(fc), _runs_note(fc) if fc.summary is not None else None):
        if note:
            body.append(f'<p class="note">{e(note)}</p>')
    body.append(f"<p>{e(_behaviour_line(fc))}</p>")
    intervals = " Bars and bands show the 95 % interval of the mean over the runs." if fc.summary else ""
    body.append('<div class="charts">')
    for name, caption, draw, height in (
            ("funnel", "The funnel: leads that ever reached each stage, and leads in it at the horizon.",
             _funnel_chart(f), 1.2 + 0.45 * len(f.stages)),
            ("weekly", "Weekly volumes: leads entering each headline stage, and handoffs to sales.",
             _weekly_chart(fc, f), 3.0),
            ("time", "Time from arrival to each stage, in days (p50 and p90).", _time_chart(f),
             1.2 + 0.45 * max(1, sum(1 for t in f.time_to if t.p50_days is not None)))):
        body += ["<figure>", charts.svg(name, draw, height).rstrip("\n"),
                 f'<figcaption id="chart-{name}">{e(caption + intervals)}</figcaption>', "</figure>"]
    body.append("</div>")
    for section in _sections(fc):
        body += _table(*section)
    extra = _assumptions(fc, "")
    if extra:
        body += [f"<h2>{e(extra[1])}</h2>", "<ul>"] + [f"<li>{e(a)}</li>" for a in extra[2:]] + ["</ul>"]
    if mean_of(f.rejected):
        body.append(f'<p class="note">Note: the engine refused {e(count(f.rejected))} simulated events; '
                    "this is a bug in fnl.</p>")
    head = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="fnl simulate">',
            f"<title>{e(title)}</title>", f"<style>\n{STYLE}</style>", "</head>", "<body>"]
    return "\n".join(head + body + ["</body>", "</html>"]) + "\n"


__all__ = ["render_html"]
