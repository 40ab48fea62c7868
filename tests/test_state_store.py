"""engine.store.StateStore: a dict of lead states that keeps only a few as objects and
the rest in a private temporary file, so `fnl trace` runs in bounded memory whatever the
number of leads (issue 8)."""
from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import store as store_module
from engine.store import LIVE_STATES_ENV, StateStore

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "funnels" / "reference.yaml"

KEYS = st.sampled_from([f"lead{i}@example.com" for i in range(8)] + ["", "ünï", "a'b\"c"])
VALUES = st.one_of(st.none(), st.integers(), st.tuples(st.text(max_size=5), st.floats(allow_nan=False)))

OPERATIONS = st.one_of(
    st.tuples(st.just("set"), KEYS, VALUES),
    st.tuples(st.just("get"), KEYS),
    st.tuples(st.just("getitem"), KEYS),
    st.tuples(st.just("contains"), KEYS),
    st.tuples(st.just("del"), KEYS),
    st.tuples(st.just("pop"), KEYS),
    st.tuples(st.just("setdefault"), KEYS, VALUES),
    st.tuples(st.just("len")),
    st.tuples(st.just("iter")),
    st.tuples(st.just("items")),
    st.tuples(st.just("values")),
    st.tuples(st.just("clear")),
)


def _outcome(call, mapping, key):
    try:
        return "ok", call(mapping, key)
    except KeyError:
        return "KeyError", None


def _getitem(mapping, key):
    return mapping[key]


def _delitem(mapping, key):
    del mapping[key]


def _pop(mapping, key):
    return mapping.pop(key)


@settings(max_examples=300, deadline=None)
@given(live=st.integers(1, 4), operations=st.lists(OPERATIONS, max_size=80))
def test_behaves_like_a_dict(live, operations):
    """Under any sequence of operations, with so few live states that most of them
    spill to the file, the store answers what a dict answers (iteration order aside)."""
    model: dict = {}
    states = StateStore(live=live)
    try:
        for op in operations:
            kind, args = op[0], op[1:]
            if kind == "set":
                states[args[0]] = args[1]
                model[args[0]] = args[1]
            elif kind == "get":
                assert states.get(args[0]) == model.get(args[0])
                assert states.get(args[0], "default") == model.get(args[0], "default")
            elif kind == "getitem":
                assert _outcome(_getitem, states, args[0]) == _outcome(_getitem, model, args[0])
            elif kind == "contains":
                assert (args[0] in states) == (args[0] in model)
            elif kind == "del":
                assert _outcome(_delitem, states, args[0]) == _outcome(_delitem, model, args[0])
            elif kind == "pop":
                assert _outcome(_pop, states, args[0]) == _outcome(_pop, model, args[0])
            elif kind == "setdefault":
                assert states.setdefault(args[0], args[1]) == model.setdefault(args[0], args[1])
            elif kind == "len":
                assert len(states) == len(model)
            elif kind == "iter":
                listed = list(states)
                assert len(listed) == len(set(listed)) == len(model)
                assert set(listed) == set(model)
            elif kind == "items":
                pairs = list(states.items())
                assert len(pairs) == len(model)
                assert dict(pairs) == model
            elif kind == "values":
                assert sorted(map(repr, states.values())) == sorted(map(repr, model.values()))
            elif kind == "clear":
                states.clear()
                model.clear()
            assert len(states) == len(model)
            assert len(states._live) <= live
        assert dict(states) == model
        assert states == model  # Mapping equality
    finally:
        states.close()


def test_reading_while_iterating_keeps_every_lead_once():
    """Reading states while iterating promotes them and evicts others: each lead still
    comes once, with its latest state."""
    states = StateStore(live=3)
    for i in range(50):
        states[f"lead{i:02d}"] = i
    states["lead07"] = "changed"
    seen = {}
    for lead in states:
        seen[lead] = states[lead]
    assert seen == {f"lead{i:02d}": ("changed" if i == 7 else i) for i in range(50)}
    with pytest.raises(RuntimeError):
        for lead in states:
            states[lead + "x"] = 0
    states.close()


def test_file_created_only_when_spilling_and_removed():
    states = StateStore(live=4)
    for i in range(4):
        states[str(i)] = i
    assert not states.spilled and states._folder is None
    states["4"] = 4
    assert states.spilled
    folder = states._folder
    assert folder is not None and os.path.isdir(folder)
    assert oct(os.stat(folder).st_mode & 0o777) == "0o700"
    states.close()
    assert not os.path.exists(folder)
    assert len(states) == 0 and dict(states) == {}

    dropped = StateStore(live=1)
    dropped["a"], dropped["b"] = 1, 2
    folder = dropped._folder
    assert folder is not None and os.path.isdir(folder)
    del dropped
    gc.collect()
    assert not os.path.exists(folder)


def test_live_states_from_the_environment(monkeypatch):
    monkeypatch.setenv(LIVE_STATES_ENV, "7")
    assert StateStore().live == 7
    for bad in ("", "0", "-3", "many"):
        monkeypatch.setenv(LIVE_STATES_ENV, bad)
        assert StateStore().live == store_module.LIVE_STATES


def _events_file(path: Path, leads: int) -> Path:
    """One opt-in per lead a second apart, then one open per lead three hours after its
    opt-in: with few live states, every open reads its lead back from the file."""
    start = datetime(2026, 3, 2, tzinfo=timezone.utc)
    rows = []
    for i in range(leads):
        lead = f"lead{i:06d}@example.com"
        rows.append((i, 0, {"type": "optin", "lead": lead, "magnet": "guide",
                            "profile": {"first_name": "Ann", "industry": ("saas", "finance", "manufacturing")[i % 3]}}))
        rows.append((i + 3 * 3600, 1, {"type": "email.opened", "lead": lead, "template": "nurture/day-0"}))
    rows.sort(key=lambda row: (row[0], row[1]))
    with path.open("w", encoding="utf-8") as fh:
        for second, _, event in rows:
            at = (start + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")
            fh.write(json.dumps({"type": event["type"], "at": at, **{k: v for k, v in event.items() if k != "type"}})
                     + "\n")
    return path


def _until(leads: int, days: int = 0) -> str:
    end = datetime(2026, 3, 2, tzinfo=timezone.utc) + timedelta(days=days, seconds=leads + 3 * 3600 + 60)
    return end.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_spilled_trace_is_the_same(tmp_path, monkeypatch):
    """The trace with three live states (nearly every state read back from the file) is
    the trace with every state in memory, line for line, the clock's steps included."""
    from engine import trace as tr
    from engine.pipeline import plan_for
    from engine.state import parse_time

    path = _events_file(tmp_path / "events.jsonl", 300)
    plan = plan_for(str(REFERENCE))
    scan = tr.scan_events(path, str(path))
    assert not scan.problems
    outputs = []
    for live in ("3", "100000"):
        monkeypatch.setenv(LIVE_STATES_ENV, live)
        outputs.append(list(tr.json_lines(tr.run_file(plan, path, scan, parse_time(_until(300, days=10))))))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) >= 300 * 5  # opt-in, open, and the nurture emails of days 2, 5 and 9


_MEASURE = textwrap.dedent("""
    import resource, subprocess, sys
    done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(done.returncode, peak)
    sys.stderr.write(done.stderr.decode("utf-8", "replace")[-2000:])
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux")
def test_trace_memory_is_bounded_whatever_the_leads(tmp_path):
    """A real `fnl trace` of 40,000 leads with 2,000 live states. With every state held
    as an object the process peaked at about 150 MB here; spilled, at about 75 MB, and
    it stays there however many leads follow. The peak is measured in a fresh process
    so that no other child of the test run counts."""
    leads = 40_000
    path = _events_file(tmp_path / "events.jsonl", leads)
    fnl = shutil.which("fnl", path=str(Path(sys.executable).parent)) or shutil.which("fnl")
    command = [fnl, "trace", str(REFERENCE), "--events", str(path), "--until", _until(leads)] if fnl else \
        [sys.executable, str(ROOT / "fnl.py"), "trace", str(REFERENCE), "--events", str(path), "--until", _until(leads)]
    env = dict(os.environ, **{LIVE_STATES_ENV: "2000"})
    done = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    code, peak_kib = map(int, done.stdout.split())
    assert code == 0, done.stderr
    assert peak_kib < 110 * 1024, f"fnl trace peaked at {peak_kib // 1024} MB for {leads:,} leads"
