"""Two trace lines an audit found wrong, each run from real files on disk through `fnl
trace` (click's CliRunner and a real subprocess of fnl.py).

1. An unsubscribed lead that a CRM event moves (`crm.demo_booked` → sql on funnels/acme)
   is moved, and the handoff says "do not email"; the trace must not also say "not moved
   to sql: unsubscribed …" for that very move. The note stays where an engagement-driven
   move is really held back.
2. A sequence step `notify: {to: owner}` reached by a lead nobody owns yet (no handoff)
   notifies nobody: the core emits `skipped` with the reason, never `notify` to None.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import fnl  # noqa: E402

ACME = REPO / "funnels" / "acme"
POST_SALE = REPO / "tests" / "cases" / "valid" / "post-sale.yaml"
PROFILE = {"first_name": "B", "company": "Bco", "industry": "saas", "employees": 500, "role": "manager",
           "region": "na", "timezone": "America/New_York"}
# from the audit's events: a pricing visit held until the opt-in makes the lead an MQL at once;
# it unsubscribes, visits pricing again (held back: engagement) and books a demo (a CRM move)
UNSUB = [
    {"type": "site.visited", "at": "2026-03-01T10:00:00Z", "lead": "b@x.example", "page": "pricing"},
    {"type": "optin", "at": "2026-03-02T14:30:00Z", "lead": "b@x.example", "magnet": "whitepaper",
     "profile": PROFILE},
    {"type": "email.opened", "at": "2026-03-02T15:00:00Z", "lead": "b@x.example",
     "template": "saas/industry-insight"},
    {"type": "email.unsubscribed", "at": "2026-03-02T16:00:00Z", "lead": "b@x.example",
     "template": "saas/industry-insight"},
    {"type": "site.visited", "at": "2026-03-03T10:00:00Z", "lead": "b@x.example", "page": "pricing"},
    {"type": "crm.demo_booked", "at": "2026-03-04T12:00:00Z", "lead": "b@x.example"},
]
CRM = [
    {"type": "crm.deal_won", "at": "2026-03-02T10:00:00Z", "lead": "k@x.example",
     "profile": {"plan": "enterprise", "region": "na", "seats": 300}},
    {"type": "crm.usage_dropped", "at": "2026-03-10T10:00:00Z", "lead": "k@x.example"},
    {"type": "crm.renewal_due", "at": "2026-03-10T11:00:00Z", "lead": "k@x.example"},
]
NOT_MOVED = "not moved to sql: unsubscribed at 2026-03-02T16:00:00Z"


def write_events(path: Path, events: List[Dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(fnl.cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def run_subprocess(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    done = subprocess.run([sys.executable, str(REPO / "fnl.py"), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def blocks(text: str) -> Dict[str, List[str]]:
    """The trace's action lines under each event head line (keyed by the head)."""
    out: Dict[str, List[str]] = {}
    head = ""
    for line in text.splitlines():
        if line.startswith("    → "):
            out[head].append(line[len("    → "):])
        else:
            head = line
            out[head] = []
    return out


def under(text: str, start: str) -> List[str]:
    [actions] = [a for h, a in blocks(text).items() if h.startswith(start)]
    return actions


def json_actions(text: str, start: str) -> List[Dict[str, Any]]:
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [a for r in rows if r["event"]["at"] == start for a in r["actions"]]


# -- 1. a CRM-driven move of an unsubscribed lead --------------------------------------

def check_unsubscribed_crm_move(text: str) -> None:
    visit = under(text, "2026-03-03T10:00:00Z  b@x.example  site.visited pricing")
    assert any(line.startswith(NOT_MOVED) for line in visit), visit  # engagement: held back, said
    demo = under(text, "2026-03-04T12:00:00Z  b@x.example  crm.demo_booked")
    assert not any(line.startswith("not moved") for line in demo), demo
    assert demo[0] == "stage mql → sql: sql because crm.demo_booked happened"
    assert any(line.startswith("hand off to ") and "do not email: unsubscribed at 2026-03-02T16:00:00Z" in line
               for line in demo), demo


def test_crm_move_of_unsubscribed_lead_is_not_also_not_moved(tmp_path: Path) -> None:
    events = write_events(tmp_path / "unsub.jsonl", UNSUB)
    check_unsubscribed_crm_move(run_cli("trace", str(ACME), "--events", str(events)))
    actions = json_actions(run_cli("trace", str(ACME), "--events", str(events), "--format", "json"),
                           "2026-03-04T12:00:00Z")
    assert "not_moved" not in [a["type"] for a in actions]
    assert [a for a in actions if a["type"] == "stage_changed"][0]["to"] == "sql"


def test_crm_move_of_unsubscribed_lead_subprocess(tmp_path: Path) -> None:
    events = write_events(tmp_path / "unsub.jsonl", UNSUB)
    check_unsubscribed_crm_move(run_subprocess("trace", str(ACME), "--events", str(events)))


# -- 2. notify the owner of a lead nobody owns ----------------------------------------

SKIPPED = "skipped notify owner  (onboarding onboarding, step notify): the lead has no owner (no handoff yet)"


def check_notify_without_owner(text: str) -> None:
    assert "notify None" not in text
    assert under(text, "2026-03-06T22:00:00Z  k@x.example  clock") == [SKIPPED]
    # after the at-risk handoff the lead has an owner: the handoff's notifications name it
    risk = under(text, "2026-03-10T10:00:00Z  k@x.example  crm.usage_dropped")
    assert "notify slack: k@x.example reached at-risk; owner ana@acme.example" in risk


def test_notify_owner_without_owner_is_skipped(tmp_path: Path) -> None:
    events = write_events(tmp_path / "crm.jsonl", CRM)
    check_notify_without_owner(run_cli("trace", str(POST_SALE), "--events", str(events)))
    out = run_cli("trace", str(POST_SALE), "--events", str(events), "--format", "json")
    assert '"to": null' not in out
    [skipped] = json_actions(out, "2026-03-06T22:00:00Z")
    assert skipped["type"] == "skipped" and skipped["action"] == "notify" and skipped["to"] == "owner"
    assert skipped["reason"] == "the lead has no owner (no handoff yet)"
    assert not any(a["type"] == "notify" and a.get("to") is None
                   for line in out.splitlines() for a in json.loads(line)["actions"])


def test_notify_owner_without_owner_subprocess(tmp_path: Path) -> None:
    events = write_events(tmp_path / "crm.jsonl", CRM)
    check_notify_without_owner(run_subprocess("trace", str(POST_SALE), "--events", str(events)))


def test_notify_owner_with_owner_names_the_owner(tmp_path: Path) -> None:
    """Once a handoff assigned an owner, a later `notify: {to: owner}` names that owner."""
    events = write_events(tmp_path / "crm.jsonl", [
        CRM[0], {"type": "crm.usage_dropped", "at": "2026-03-03T10:00:00Z", "lead": "k@x.example"}])
    text = run_cli("trace", str(POST_SALE), "--events", str(events))
    notify = [line for actions in blocks(text).values() for line in actions if "Check in on the first week" in line]
    assert notify == ["notify ana@acme.example: Check in on the first week."], text
