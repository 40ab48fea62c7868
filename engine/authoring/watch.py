"""`fnl watch [PATH]`: on every save, check, compile and forecast again, and say only
what changed.

A cycle (`Watch.cycle`) checks every definition under the paths as `fnl validate` does,
compiles each one without errors, and simulates a small cohort of it (`LEADS` leads, the
behaviour model beside it or the default one, seed 1: the same synthetic leads every time,
so a figure that moves moved because of the edit). It prints the findings that are new
and the ones fixed since the last cycle, definitions added or removed, and headline
figures that moved, then `ready`. The process stays warm, so a cycle re-reads only what
changed (parsed files, compiled templates and renders are remembered).

File events come from watchdog. Editors save in bursts (a temporary file, a rename, a
second write), so a cycle starts once the definitions have been quiet for `QUIET`
seconds. A half-written, renamed or deleted file is just another state of the tree: a
YAML error, or a definition gone, reported like any other change; nothing that happens
in a cycle stops the watch.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

QUIET = 0.05  # seconds without a file event before a cycle
LEADS = 200  # leads of the small forecast
WATCHED = (".yaml", ".yml", ".j2", ".json")
CHANGES = ("created", "modified", "moved", "deleted", "closed")  # watchdog's event types that change a file

Finding = Tuple[str, str, str, str]  # (file, severity, code, message)


@dataclass
class Snapshot:
    """What one cycle found: each finding with where it is now, and each definition's
    headline figures (None: it could not be forecast)."""

    findings: Counter = field(default_factory=Counter)  # Finding -> how many
    where: Dict[Finding, Tuple[int, int]] = field(default_factory=dict)  # Finding -> (line, column)
    figures: Dict[str, Optional[Dict[str, float]]] = field(default_factory=dict)  # definition -> figures
    template_dirs: Set[Path] = field(default_factory=set)


def _figures(run: Any) -> Dict[str, float]:
    from ..simulate.figures import figures, mean_of

    f = figures(run)

    def number(x: Any) -> float:
        return float(mean_of(x) or 0.0)

    out = {"leads": number(f.leads)}
    for stage in f.stages:
        if stage.name in f.headline:
            out[f"reached {stage.name}"] = number(stage.reached)
    out["emails per lead"] = round(number(f.emails.per_lead_mean), 2)
    out["unsubscribes"] = number(f.unsubscribes)
    return out


def snapshot(paths: Sequence[str], leads: int = LEADS, forecast: bool = True) -> Snapshot:
    """Check, compile and (with `forecast`) simulate every definition under `paths`."""
    from ..check import check_paths
    from ..compile import compile_funnel
    from ..errors import UsageError

    snap = Snapshot()
    try:
        results = check_paths(tuple(paths))
    except UsageError as exc:  # the path itself is gone: nothing to check
        key: Finding = (str(paths[0]), "error", "path", str(exc))
        snap.findings[key] += 1
        snap.where[key] = (1, 1)
        return snap
    for checked in results:
        name = checked.source.name
        for p in checked.problems:
            key = (p.location.file, p.severity, p.code, p.message)
            snap.findings[key] += 1
            snap.where[key] = (p.location.line, p.location.column)
        funnel = checked.funnel
        if funnel is None or any(p.severity == "error" for p in checked.problems):
            snap.figures[name] = None
            continue
        snap.template_dirs.add(Path(funnel.template_dir))
        if not forecast:
            snap.figures[name] = {}
            continue
        try:
            snap.figures[name] = _forecast(compile_funnel(funnel), funnel, leads)
        except Exception as exc:  # noqa: BLE001 - a forecast that fails is said, not fatal
            snap.figures[name] = None
            key = (name, "error", "forecast", f"the forecast failed: {exc}")
            snap.findings[key] += 1
            snap.where[key] = (1, 1)
    return snap


def _forecast(plan: Any, funnel: Any, leads: int) -> Dict[str, float]:
    from ..simulate import start_minute
    from ..simulate.compare import behaviour_for
    from ..simulate.run import simulate

    where = funnel.document.files[0] if funnel.document.files else ""
    model = behaviour_for(str(where), None, plan)
    return _figures(simulate(plan, model, seed=1, leads=leads, start=start_minute(None)))


def changes(old: Optional[Snapshot], new: Snapshot,
            good: Optional[Dict[str, Dict[str, float]]] = None) -> List[str]:
    """What changed from `old` to `new`, a line each: new and fixed findings, definitions
    added and removed, figures that moved since the last forecast of each definition
    (`good`, updated here)."""
    before = old or Snapshot()
    good = good if good is not None else {}
    lines = []
    for key in sorted(new.findings - before.findings):
        file, severity, code, message = key
        line, column = new.where[key]
        lines.append(f"new    {file}:{line}:{column}: {severity} {code}: {message}")
    for key in sorted(before.findings - new.findings):
        file, severity, code, message = key
        lines.append(f"fixed  {file}: {severity} {code}: {message}")
    for name in sorted(set(before.figures) - set(new.figures)):
        lines.append(f"gone   {name}")
    for name in sorted(new.figures):
        now, then = new.figures[name], good.get(name)
        if name not in before.figures:
            lines.append(f"added  {name}")
        if not now:
            continue
        good[name] = now
        if then is None:
            lines.append(f"forecast {name}: " + ", ".join(f"{k} {_num(v)}" for k, v in now.items()))
            continue
        moved = [f"{k} {_num(then[k])} → {_num(v)}" for k, v in now.items() if k in then and then[k] != v]
        if moved:
            lines.append(f"moved  {name}: " + ", ".join(moved))
    return lines


def _num(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.2f}"


class Watch:
    """The watch loop: file events in, a cycle after each quiet spell, its changes out."""

    def __init__(self, paths: Sequence[str], out: Callable[[str], None], leads: int = LEADS,
                 forecast: bool = True) -> None:
        self.paths = list(paths)
        self.out = out
        self.leads = leads
        self.forecast = forecast
        self.events: "queue.Queue[str]" = queue.Queue()
        self.last: Optional[Snapshot] = None
        self.good: Dict[str, Dict[str, float]] = {}  # each definition's last forecast
        self.errors = 0  # errors the last cycle found
        self.watched: Set[str] = set()
        self.observer: Optional[object] = None

    def cycle(self) -> None:
        began = time.perf_counter()
        try:
            snap = snapshot(self.paths, self.leads, self.forecast)
        except Exception as exc:  # noqa: BLE001 - the watch outlives any one state of the files
            self.out(f"error  the check failed: {type(exc).__name__}: {exc}")
            self.errors = 1
            return
        for line in changes(self.last, snap, self.good):
            self.out(line)
        self.last = snap
        self._watch(snap)
        errors = self.errors = sum(n for (_, severity, _, _), n in snap.findings.items() if severity == "error")
        self.out(f"ready  {len(snap.figures)} definition{'s' if len(snap.figures) != 1 else ''}, "
                 f"{errors} error{'s' if errors != 1 else ''} ({(time.perf_counter() - began) * 1000:.0f} ms)")

    def _watch(self, snap: Snapshot) -> None:
        """Watch the paths and every template folder the definitions use."""
        if self.observer is None:
            return
        from watchdog.events import FileSystemEventHandler

        queue_ = self.events

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: object) -> None:
                # Changes only: the check's own reads (opened, closed without writing) are no news.
                if getattr(event, "event_type", "") not in CHANGES:
                    return
                for attr in ("src_path", "dest_path"):
                    path = str(getattr(event, attr, "") or "")
                    name = os.path.basename(path)
                    if path and not name.startswith((".", "#")) and not name.endswith("~") and \
                            (path.endswith(WATCHED) or getattr(event, "is_directory", False)):
                        queue_.put(path)

        wanted = {os.path.abspath(p) if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)) or "."
                  for p in self.paths}
        wanted |= {str(d.resolve()) for d in snap.template_dirs if d.is_dir()}
        for folder in sorted(wanted - self.watched):
            if os.path.isdir(folder):
                self.observer.schedule(Handler(), folder, recursive=True)  # type: ignore[attr-defined]
                self.watched.add(folder)

    def run(self, stop: Optional[threading.Event] = None) -> None:
        from watchdog.observers import Observer

        observer = self.observer = Observer()
        observer.start()
        try:
            self.cycle()
            while stop is None or not stop.is_set():
                try:
                    self.events.get(timeout=0.2)
                except queue.Empty:
                    continue
                # A burst of saves: wait until the files are quiet.
                while True:
                    try:
                        self.events.get(timeout=QUIET)
                    except queue.Empty:
                        break
                self.cycle()
        finally:
            observer.stop()
            observer.join(timeout=5)
