"""Deploying a new plan to a database with leads in flight (`engine.runtime.deploy`).

A synthetic quarter of the acme funnel runs on plan A (a copy of funnels/acme) to a point
where leads wait on many steps; plan B is the same definition edited on disk: a step
removed (its leads resume at the next one), a sequence removed (its leads leave it), a
step added. `fnl plan --db` predicts what B does to those leads, `fnl run` with B deploys
it and does exactly that, the leads go on at their due times under B, and the actions
after the deploy carry B's hash in their keys. A plan the leads refuse is refused with the
reason and leaves the database as it was, and a deploy killed midway leaves A running.
Everything runs the real CLI on real SQLite files."""
from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Tuple

import pytest

from conftest import REPO, clean_env
from engine import planfile
from engine.migrate import migrate, step_move
from engine.pipeline import plan_for
from engine.plan import dumps
from engine.runtime.db import Database, action_key
from engine.state import Action, LeadState, iso, parse_time
from test_runtime import simulated_events

REMOVED_STEP = "      - {wait: 4d, send: saas/case-study, variants: {a: 50, b: 50}}\n"
FINANCE_END = "      - {wait: 8d, send: shared/whats-next}\n    exit: {stage_at_least: sql}\n\n  # The monthly brief"
ADDED_STEP = "      - {wait: 2d, send: shared/talk-to-an-expert, id: follow-up}\n"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def copy_of_acme(root: Path) -> Path:
    """funnels/acme and its templates, laid out as in the repository."""
    shutil.copytree(REPO / "funnels" / "acme", root / "funnels" / "acme")
    shutil.copytree(REPO / "templates" / "acme", root / "templates" / "acme")
    return root / "funnels" / "acme"


def fnl(*args: object, env: Dict[str, str] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "fnl.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env or clean_env(), cwd=REPO)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Plans A and B on disk, the events of 400 simulated acme leads over 90 days split at
    the first quarter of it, and a database that ran A to that point."""
    root = tmp_path_factory.mktemp("deploy")
    a = copy_of_acme(root / "a")
    b = copy_of_acme(root / "b")
    nurture = b / "nurture.yaml"
    edit(nurture, REMOVED_STEP, "")  # nurture-saas/case-study: its leads resume at webinar-invite
    edit(nurture, FINANCE_END, FINANCE_END.replace("    exit:", ADDED_STEP + "    exit:"))  # nurture-finance/follow-up
    text = nurture.read_text(encoding="utf-8")
    nurture.write_text(text[:text.index("  # The monthly brief")].rstrip() + "\n", encoding="utf-8")  # monthly-brief
    plan_a, plan_b = plan_for(str(a)), plan_for(str(b))
    assert plan_a.content_hash == plan_for(str(REPO / "funnels" / "acme")).content_hash
    assert plan_b.sequence("monthly-brief") is None and plan_b.sequence("nurture-finance").steps[-1].id == "follow-up"

    applied, start, end = simulated_events(a, leads=400, days=90)
    middle = start + (end + 1 - start) // 4
    early, late = root / "early.jsonl", root / "late.jsonl"
    early.write_text("".join(json.dumps(e.to_json()) + "\n" for e in applied if e.at <= middle), encoding="utf-8")
    late.write_text("".join(json.dumps(e.to_json()) + "\n" for e in applied if e.at > middle), encoding="utf-8")
    db = root / "middle.db"
    proc = fnl("run", a, "--db", db, "--events", early, "--until", iso(middle), "--actions",
               f"jsonl:{root / 'a.jsonl'}")
    assert proc.returncode == 0, proc.stderr
    return SimpleNamespace(root=root, a=a, b=b, plan_a=plan_a, plan_b=plan_b, middle=middle, end=end, late=late,
                           db=db)


@pytest.fixture
def db(world: SimpleNamespace, tmp_path: Path) -> Path:
    """A copy of the database that ran plan A to the middle, for one test."""
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(world.db) + suffix)
        if source.exists():
            shutil.copy(source, tmp_path / f"acme.db{suffix}")
    return tmp_path / "acme.db"


def leads(path: Path, funnel: str) -> Dict[str, object]:
    database = Database(str(path)).scope(funnel)
    try:
        return dict(database.states())
    finally:
        database.close()


def meta(path: Path, funnel: str, key: str):
    database = Database(str(path)).scope(funnel)
    try:
        return database.meta(key)
    finally:
        database.close()


def snapshot(path: Path) -> Dict[str, List[Tuple]]:
    """Every row of the tables a deploy may touch, as stored (the states as their text)."""
    with sqlite3.connect(path) as conn:
        return {table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
                for table in ("meta", "leads", "outbox", "inbox", "shared")}


def outbox(path: Path) -> List[Tuple[int, str, str, str, Dict]]:
    with sqlite3.connect(path) as conn:
        return [(seq, key, lead, step, json.loads(action)) for seq, key, lead, step, action in
                conn.execute("SELECT seq, key, lead, step, action FROM outbox ORDER BY seq")]


def test_fnl_plan_db_predicts_exactly_what_the_deploy_does(world, db):
    before = leads(db, world.plan_a.funnel)
    rows = snapshot(db)
    shown = fnl("plan", "--db", db, world.b, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    [entry] = json.loads(shown.stdout)["plans"]
    predicted = entry["deployment"]
    assert predicted["from"] == world.plan_a.content_hash and predicted["to"] == world.plan_b.content_hash
    assert predicted["deployable"] and predicted["refusals"] == []
    # the three edits all reach leads in flight
    moves = {(s["sequence"], s["step"]): s for s in predicted["steps"]}
    resumed = moves[("nurture-saas", "case-study")]
    assert resumed["outcome"] == "resumes" and resumed["target"] == "webinar-invite" and resumed["leads"] > 0
    assert moves[("monthly-brief", "benchmark-report")]["outcome"] == "exits"
    assert predicted["outcomes"]["exits"] > 0 and predicted["outcomes"]["stays"] > 0
    # the counts are those of the stored leads, by the migration rule
    expected = Counter()
    for state in before.values():
        if isinstance(state, LeadState):
            for run in state.running:
                move = step_move(world.plan_a, world.plan_b, run.sequence, run.step_id)
                expected[(run.sequence, run.step_id, move.outcome, move.target)] += 1
    assert Counter({(s["sequence"], s["step"], s["outcome"], s["target"]): s["leads"]
                    for s in predicted["steps"]}) == expected
    assert snapshot(db) == rows  # fnl plan --db writes nothing

    text = fnl("plan", "--db", db, world.b)
    assert text.returncode == 0, text.stderr
    one = resumed['leads'] == 1
    assert (f"  nurture-saas/case-study (removed): {resumed['leads']} lead{'' if one else 's'} "
            f"resume{'s' if one else ''} at webinar-invite when it was due") in text.stdout.splitlines()
    # fnl plan OLD NEW says the same of each step these leads wait on
    general = fnl("plan", world.a, world.b)
    assert general.returncode == 0, general.stderr
    for s in predicted["steps"]:
        if s["outcome"] == "resumes":
            assert (f"leads waiting on {s['sequence']}/{s['step']} (removed) resume at {s['target']} when it was due"
                    in general.stdout)
        elif s["outcome"] == "exits":
            assert f"leads in {s['sequence']} leave it (the sequence is removed)" in general.stdout

    deployed = fnl("run", world.b, "--db", db, "--until", iso(world.middle))
    assert deployed.returncode == 0, deployed.stderr
    assert f"fnl: deployed {world.plan_b.content_hash[:19]} over {world.plan_a.content_hash[:19]}" in deployed.stderr
    record = json.loads(meta(db, world.plan_b.funnel, "deployed:1"))
    assert record.pop("clock") == iso(world.middle)
    assert record == predicted
    assert meta(db, world.plan_b.funnel, "deployments") == "1"
    assert meta(db, world.plan_b.funnel, "plan") == world.plan_b.content_hash
    kept = planfile.parse(meta(db, world.plan_b.funnel, "plan_json").encode("utf-8"), "plan_json")
    assert dumps(kept) == dumps(world.plan_b)
    # every lead's state is the migrated one (nothing else was due at the middle)
    after = leads(db, world.plan_b.funnel)
    assert set(after) == set(before)
    for lead, state in before.items():
        assert after[lead] == (migrate(world.plan_a, world.plan_b, state)[0] if isinstance(state, LeadState)
                               else state), lead


def test_leads_go_on_under_the_new_plan_at_their_due_times(world, db):
    before = leads(db, world.plan_a.funnel)
    waiting = {lead: next(r for r in state.running if r.sequence == "nurture-saas")
               for lead, state in before.items() if isinstance(state, LeadState)
               and any(r.sequence == "nurture-saas" and r.step_id == "case-study" for r in state.running)}
    assert waiting
    last = max(seq for seq, *_ in outbox(db))
    assert fnl("run", world.b, "--db", db, "--until", iso(world.middle)).returncode == 0
    for lead, run in waiting.items():
        shown = fnl("explain", lead, "--db", db)
        assert shown.returncode == 0, shown.stderr
        assert f"nurture-saas (next step webinar-invite at {iso(run.due)})" in shown.stdout
        assert "monthly-brief" not in shown.stdout.split("sequences running:")[-1]

    proc = fnl("run", world.b, "--db", db, "--events", world.late, "--until", iso(world.end), "--actions",
               f"jsonl:{db.parent / 'b.jsonl'}")
    assert proc.returncode == 0, proc.stderr
    assert "deployed" not in proc.stderr  # deployed once
    after = [row for row in outbox(db) if row[0] > last]
    assert after
    sent_on_time = 0
    for lead, run in waiting.items():
        mine = [a for _, _, who, _, a in after if who == lead and a.get("sequence") == "nurture-saas"]
        first = mine[0]
        if first["type"] == "exit_sequence":  # left the track (sales took over, an unsubscribe) before it was due
            assert parse_time(first["at"]) <= run.due
            continue
        assert first.get("step") == "webinar-invite" and first["at"] == iso(run.due), (lead, first)
        sent_on_time += 1
    assert sent_on_time
    # nothing runs any more on what B removed, and B's new step runs
    assert not [a for *_, a in after if a.get("sequence") == "monthly-brief"]
    assert not [a for *_, a in after if a.get("sequence") == "nurture-saas" and a.get("step") == "case-study"]
    assert [a for *_, a in after if a["type"] == "send_email" and a.get("step") == "follow-up"]
    # every action decided after the deploy is keyed by plan B
    for _, key, lead, step, a in after:
        action = Action(a["type"], parse_time(a["at"]), lead)
        assert key in {action_key(world.plan_b.content_hash, step, i, action) for i in range(64)}, (step, a)
        assert key not in {action_key(world.plan_a.content_hash, step, i, action) for i in range(64)}


def incompatible(world: SimpleNamespace) -> Path:
    """Plan A with a narrower profile attribute, a decay window, and two steps swapped."""
    c = copy_of_acme(world.root / "c") if not (world.root / "c").exists() else world.root / "c" / "funnels" / "acme"
    if "window" not in (c / "scoring.yaml").read_text(encoding="utf-8"):
        edit(c / "funnel.yaml", "    type: integer\n    minimum: 1\n", "    type: integer\n    minimum: 100\n")
        edit(c / "scoring.yaml", "    half_life: 30d\n", "    half_life: 30d\n    window: 90d\n")
        edit(c / "nurture.yaml", "      - {wait: 0d, send: saas/industry-insight}\n      - {wait: 3d, send: "
             "saas/capability}\n", "      - {wait: 3d, send: saas/capability}\n      - {wait: 0d, send: "
             "saas/industry-insight}\n")
    return c


def test_an_incompatible_plan_is_refused_with_the_reason_and_nothing_changes(world, db):
    c = incompatible(world)
    before = leads(db, world.plan_a.funnel)
    states = [s for s in before.values() if isinstance(s, LeadState)]
    small = sum(1 for s in states if 0 < dict(s.profile).get("employees", 100) < 100)
    scored = sum(1 for s in states if s.score)
    swapped = sum(1 for s in states for r in s.running if (r.sequence, r.step_id) == ("nurture-saas", "capability"))
    assert small and scored and swapped
    rows = snapshot(db)
    files = {p.name: p.read_bytes() for p in db.parent.iterdir() if p.name == "acme.db"}

    proc = fnl("run", c, "--db", db, "--until", iso(world.middle))
    assert proc.returncode == 3, proc.stderr
    error, help_ = proc.stderr.splitlines()
    assert error.startswith(f"fnl: error: --db {db} runs another plan of acme-b2b ({world.plan_a.content_hash[:19]})")
    assert f"{small:,} leads hold a profile the new plan refuses: `employees` must be at least 100" in error
    assert "(and 2 more: fnl plan --db" in error
    assert help_ == "  help: let `employees` accept the values stored, as the old plan did, then run again (nothing " \
                    "was changed)"
    assert snapshot(db) == rows
    assert {p.name: p.read_bytes() for p in db.parent.iterdir() if p.name == "acme.db"} == files

    shown = fnl("plan", "--db", db, c)
    assert shown.returncode == 1, shown.stderr
    out = shown.stdout
    assert "Refused: this plan cannot be deployed" in out and "(3 reasons;" in out
    they = "it" if swapped == 1 else "they"
    assert f"  - {swapped:,} lead{'s' if swapped > 1 else ''} wait{'s' if swapped == 1 else ''} on " \
           f"nurture-saas/capability, and the new plan puts industry-insight, which {they} already passed, after " \
           f"it: {they} would get it again" in out
    assert f"  - {scored:,} leads have a score the new decay cannot carry" in out
    assert "    fix: keep the steps of nurture-saas in their order, or give the step moved earlier an id key of " \
           "its own in nurture-saas's steps, e.g. `- {id: capability-2, wait: ..., send: ...}`: leads past its new " \
           "place then skip it" in out
    assert snapshot(db) == rows


def test_a_deploy_killed_midway_leaves_the_old_plan_running(world, db):
    rows = snapshot(db)
    killed = fnl("run", world.b, "--db", db, "--until", iso(world.middle), env=clean_env(FNL_CRASH_AT="mid-deploy"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert snapshot(db) == rows  # the deploy's transaction never committed: plan A and its leads as they were
    assert meta(db, world.plan_a.funnel, "plan") == world.plan_a.content_hash
    again = fnl("run", world.b, "--db", db, "--until", iso(world.middle))
    assert again.returncode == 0, again.stderr
    assert meta(db, world.plan_b.funnel, "plan") == world.plan_b.content_hash
    assert meta(db, world.plan_b.funnel, "deployments") == "1"


def test_a_database_an_earlier_fnl_started_keeps_its_plan_on_the_next_run(world, db):
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'plan_json'")
    rows = snapshot(db)
    refused = fnl("run", world.b, "--db", db, "--until", iso(world.middle))
    assert refused.returncode == 3 and "does not hold the plan itself" in refused.stderr
    assert "run it once with the plan it was started with" in refused.stderr
    assert snapshot(db) == rows
    assert fnl("run", world.a, "--db", db, "--until", iso(world.middle)).returncode == 0
    assert meta(db, world.plan_a.funnel, "plan_json") == dumps(world.plan_a)
    assert fnl("run", world.b, "--db", db, "--until", iso(world.middle)).returncode == 0
    assert meta(db, world.plan_b.funnel, "plan") == world.plan_b.content_hash


def test_the_plan_help_db_example_runs_on_the_database_of_the_run_example(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import fnl as cli
    from test_help import examples, fnl_words, help_text

    monkeypatch.chdir(REPO)
    run_line = next(line for line in examples(help_text("run")) if "--events" in line)
    [plan_line] = [line for line in examples(help_text("plan")) if "--db" in line]
    path = str(tmp_path / "acme.db")
    for line in (run_line, plan_line):
        words = [path if w == "acme.db" else w for w in fnl_words(line)[1:]]
        result = CliRunner().invoke(cli.cli, words)
        assert result.exit_code == 0, f"{line}: {result.output}"
    assert "Leads in flight in" in result.output and "Traceback" not in result.output


def test_the_plan_a_database_keeps_reads_back_as_the_plan(world):
    assert planfile.parse(dumps(world.plan_b).encode("utf-8"), "plan_json") == world.plan_b


def test_what_refuses_a_plan_and_what_only_is_said(world, db):
    """The rules of `migrate.concerns` on the stored leads: a removed stage moves its leads
    back, or refuses the plan when no earlier stage is left; a step's kind changed under
    its ID and an open SLA of a removed handoff go on, said with their counts."""
    from dataclasses import replace

    from engine.runtime.deploy import check

    a = world.plan_a
    stored = sorted(leads(db, a.funnel).items())
    in_flight = [s for _, s in stored if isinstance(s, LeadState)]
    by_stage = Counter(s.stage for s in in_flight)
    assert by_stage["subscriber"] and by_stage["mql"]

    no_mql = replace(a, stages=tuple(s for s in a.stages if s.name != "mql"))
    d = check(a, no_mql, stored)
    assert d.deployable and [(s.stage, s.to, s.leads) for s in d.stages] == [("mql", "subscriber", by_stage["mql"])]

    no_subscriber = replace(a, stages=a.stages[1:])
    d = check(a, no_subscriber, stored)
    [refused] = d.refusals
    assert refused.leads == by_stage["subscriber"] and refused.fix == "keep stage subscriber while leads are in it"
    assert "no earlier stage left to move them back to" in refused.reason

    saas = a.sequence("nurture-saas")
    notify = replace(saas, steps=tuple(replace(s, action="notify") if s.id == "whats-next" else s for s in saas.steps))
    kind = replace(a, sequences=tuple(notify if s.name == "nurture-saas" else s for s in a.sequences))
    waiting = sum(1 for s in in_flight for r in s.running if (r.sequence, r.step_id) == ("nurture-saas", "whats-next"))
    assert waiting
    d = check(a, kind, stored)
    assert d.deployable and [(w.key, w.leads) for w in d.warnings] == [("kind:nurture-saas:whats-next", waiting)]

    lead, state = next((lead, s) for lead, s in stored if isinstance(s, LeadState))
    assigned = [(lead, replace(state, owner="ana.silva@acme.example", sla_deadline=world.middle + 60, sla_stage="sql"))]
    d = check(a, replace(a, handoff=tuple(h for h in a.handoff if h.stage != "sql")), assigned)
    assert d.deployable and [(w.key, w.leads, w.first) for w in d.warnings] == [("sla:sql", 1, lead)]
    assert d.leads[0][1].sla_deadline == world.middle + 60  # the SLA runs on as promised


def test_a_replaced_plan_goes_back_only_on_purpose(world, db):
    """A worker started with an older definition must not undo a deploy: the plan a deploy
    replaced is refused with why, and deployed back only with --rollback."""
    assert fnl("run", world.b, "--db", db, "--until", iso(world.middle)).returncode == 0
    rows = snapshot(db)
    stale = fnl("run", world.a, "--db", db, "--until", iso(world.middle))
    assert stale.returncode == 3, stale.stderr
    assert f"plan {world.plan_a.content_hash[:19]} ran here before and was replaced by plan " \
           f"{world.plan_b.content_hash[:19]}" in stale.stderr
    assert "--rollback" in stale.stderr and "Traceback" not in stale.stderr
    assert len(stale.stderr.strip().splitlines()) <= 2
    assert snapshot(db) == rows  # nothing changed
    back = fnl("run", world.a, "--db", db, "--until", iso(world.middle), "--rollback")
    assert back.returncode == 0, back.stderr
    assert meta(db, world.plan_a.funnel, "plan") == world.plan_a.content_hash
    again = fnl("run", world.b, "--db", db, "--until", iso(world.middle))  # b is the replaced one now
    assert again.returncode == 3 and "--rollback" in again.stderr
