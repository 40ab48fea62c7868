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
