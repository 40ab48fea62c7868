"""`fnl trace` holds no more than a bounded number of problems, whatever the file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from engine import trace as tr

REPO = Path(__file__).resolve().parent.parent


def test_rejected_events_past_the_limit_are_counted_not_kept(tmp_path: Path) -> None:
    n = tr.MAX_PROBLEMS + 57
    events = tmp_path / "events.jsonl"
    with events.open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({"type": "optin", "at": f"2026-03-02T09:{i // 60 % 60:02d}:00Z",
                                  "lead": f"l{i:05d}@x.example", "magnet": "nope",
                                  "profile": {"industry": "saas"}}) + "\n")
    r = subprocess.run([sys.executable, str(REPO / "fnl.py"), "trace", str(REPO / "funnels" / "reference.yaml"),
                        "--events", str(events)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("error FNL603: event rejected: opt-in names unknown lead magnet `nope`") == tr.MAX_PROBLEMS
    assert r.stderr.rstrip().endswith("57 more events were rejected; fix the ones above first")


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    import time

    sparse = tmp_path / "huge.jsonl"
    with sparse.open("wb") as out:
        out.truncate(tr.MAX_EVENTS_BYTES + 1)  # sparse: no disk used, and nothing worth reading
    began = time.monotonic()
    scan = tr.scan_events(sparse, "huge.jsonl")
    assert time.monotonic() - began < 1.0
    assert [p.message for p in scan.problems] == ["events file is larger than 4 GiB: split it by day"]


def _lines(tmp_path: Path, minutes: list) -> Path:
    path = tmp_path / "events.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i, minute in enumerate(minutes):
            out.write(json.dumps({"type": "optin", "at": f"2026-03-02T09:{minute:02d}:00Z", "lead": f"l{i}@x.example",
                                  "magnet": "guide", "profile": {"industry": "saas"}}) + "\n")
        out.write("this line is never read\n")
    return path


def test_an_unsorted_file_too_big_to_sort_stops_the_scan_at_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tr, "MAX_UNORDERED", 5)
    scan = tr.scan_events(_lines(tmp_path, [9, 8, 7, 6, 5, 4, 3, 2, 1]), "events.jsonl")
    assert [p.message for p in scan.problems] == ["events are not in time order and there are more than 5 of them"]


def test_too_many_events_in_one_minute_are_refused(tmp_path: Path, monkeypatch) -> None:
    """The events of one minute are put in engine order in memory: that memory is bounded."""
    monkeypatch.setattr(tr, "MAX_UNORDERED", 5)
    scan = tr.scan_events(_lines(tmp_path, [1, 2, 2, 2, 2, 2, 2, 3]), "events.jsonl")
    assert [p.message for p in scan.problems] == ["more than 5 events are stamped with the same minute"]
    ok = tr.scan_events(_lines(tmp_path, [1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3]), "events.jsonl")
    assert [p.message for p in ok.problems if "same minute" in p.message] == []
