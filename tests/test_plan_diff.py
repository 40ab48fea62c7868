"""`fnl plan`: what a change does to the compiled funnel and to leads in flight.

Each test makes a real git repository in tmp_path holding funnels/acme and its templates,
commits it, edits the working tree the way a pull request would, and runs the CLI as a
subprocess from inside the repository.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine import core, diff as d  # noqa: E402
from engine.drive import drive  # noqa: E402
from engine.migrate import migrate  # noqa: E402
from engine.pipeline import plan_for  # noqa: E402
from engine.state import Event, minutes  # noqa: E402

ACME = "funnels/acme"
DAY = 1440


def fnl(*args: Any, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    return subprocess.run([sys.executable, str(REPO / "fnl.py"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.example", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t.example", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    shutil.copytree(REPO / "funnels" / "acme", root / "funnels" / "acme")
    shutil.copytree(REPO / "templates" / "acme", root / "templates" / "acme")
    git("init", "-q", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "acme as it is", cwd=root)
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


CAPABILITY = "      - {wait: 3d, send: saas/capability}"
WHATS_NEXT = "      - {wait: 8d, send: shared/whats-next}\n    exit: {stage_at_least: sql}\n\n  nurture-manufacturing:"


def the_pull_request(root: Path) -> None:
    """Change a wait, add an email step and raise the MQL threshold."""
    nurture = root / ACME / "nurture.yaml"
    edit(nurture, CAPABILITY, "      - {wait: 2d, send: saas/capability}")
    edit(nurture, WHATS_NEXT, WHATS_NEXT.replace(
        "    exit:", "      - {wait: 5d, send: saas/industry-insight, id: recap}\n    exit:"))
    edit(root / ACME / "scoring.yaml", "    mql: 40\n", "    mql: 50\n")


def test_no_changes(repo):
    r = fnl("plan", "--base", "HEAD", ACME, "--detailed-exitcode", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Plan for acme-b2b: No changes.\n"


def line_of(path: Path, text: str) -> int:
    """The 1-based line of `path` holding `text` (which must occur once)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = [i + 1 for i, ln in enumerate(lines) if text in ln]
    assert len(found) == 1, f"{text!r} is on lines {found} of {path.name}"
    return found[0]


def test_wait_send_and_threshold_change(repo):
    old_mql = yaml.safe_load((repo / ACME / "scoring.yaml").read_text())["scoring"]["thresholds"]["mql"]
    assert old_mql == 40
    the_pull_request(repo)
    r = fnl("plan", "--base", "HEAD", ACME, cwd=repo)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    nurture, scoring = repo / ACME / "nurture.yaml", repo / ACME / "scoring.yaml"
    assert lines[0] == f"Plan for acme-b2b: + 1 send, ~ 1 wait, ~ MQL threshold {old_mql} → 50"
    # one line per change, in the order the definition reads, each at the line that changed
    assert lines[2:5] == [
        f"  ~ MQL threshold {old_mql} → 50  ({ACME}/scoring.yaml:{line_of(scoring, 'mql: 50')})",
        f"  ~ step nurture-saas/capability: wait 3d → 2d  ({ACME}/nurture.yaml:"
        f"{line_of(nurture, '{wait: 2d, send: saas/capability}')})",
        f"  + step nurture-saas/recap: send saas/industry-insight after 5d  ({ACME}/nurture.yaml:"
        f"{line_of(nurture, 'id: recap')})",
    ]
    assert lines[5] == ""
    flight = lines[lines.index("Leads in flight:") + 1:]
    assert any("nurture-saas/capability" in n and "keep their due time" in n and "wait 2d" in n for n in flight)
    assert any("nurture-saas" in n and "new step recap" in n for n in flight)
    assert any("`mql`" in n and "fewer leads" in n and "40 → 50" in n for n in flight)
    # only nurture-saas changed: the other tracks are not mentioned
    assert "nurture-finance" not in r.stdout and "nurture-manufacturing" not in r.stdout


def test_detailed_exitcode(repo):
    assert fnl("plan", "--base", "HEAD", ACME, "--detailed-exitcode", cwd=repo).returncode == 0
    the_pull_request(repo)
    assert fnl("plan", "--base", "HEAD", ACME, "--detailed-exitcode", cwd=repo).returncode == 2
    assert fnl("plan", "--base", "HEAD", ACME, cwd=repo).returncode == 0
    assert fnl("plan", "--base", "HEAD", ACME, "--detailed-exitcode", "--format", "json", cwd=repo).returncode == 2
    git("commit", "-qam", "the change", cwd=repo)
    assert fnl("plan", "--base", "HEAD", ACME, "--detailed-exitcode", cwd=repo).returncode == 0
    assert fnl("plan", "--base", "HEAD~1", ACME, "--detailed-exitcode", cwd=repo).returncode == 2


def test_removing_a_step_says_where_leads_resume(repo):
    old = plan_for(str(repo / ACME)).sequence("nurture-saas")
    removed = next(s for s in old.steps if s.template == "saas/case-study")
    following = old.steps[removed.index + 1]
    edit(repo / ACME / "nurture.yaml", "      - {wait: 4d, send: saas/case-study, variants: {a: 50, b: 50}}\n", "")
    r = fnl("plan", "--base", "HEAD", ACME, "--detailed-exitcode", cwd=repo)
    assert r.returncode == 2, r.stderr
    # the case study was the only step sending saas/case-study, so the plan no longer pins it;
    # its file is still there, so nothing reads as deleted
    assert r.stdout.splitlines()[0] == "Plan for acme-b2b: - 1 send, ~ 1 template"
    # what was removed is located in the revision it was removed from, named as git names it
    at = line_of(REPO / ACME / "nurture.yaml", "{wait: 4d, send: saas/case-study, variants: {a: 50, b: 50}}")
    assert (f"  - step nurture-saas/{removed.id}: send saas/case-study after 4d, variants {{a: 50, b: 50}}  "
            f"(HEAD:{ACME}/nurture.yaml:{at})") in r.stdout.splitlines()
    assert ("  ~ template saas/case-study: no longer sent (the file stays)  (templates/acme/saas/case-study.j2:1)"
            in r.stdout.splitlines())
    assert (f"leads waiting on nurture-saas/{removed.id} (removed) resume at {following.id} when it was due"
            in r.stdout)


def test_removing_the_last_step_says_leads_finish(repo):
    old = plan_for(str(repo / ACME)).sequence("monthly-brief")
    last = old.steps[-1]
    edit(repo / ACME / "nurture.yaml", f"      - {{wait: 30d, send: {last.template}}}\n", "")
    r = fnl("plan", "--base", "HEAD", ACME, cwd=repo)
    assert r.returncode == 0, r.stderr
    assert f"leads waiting on monthly-brief/{last.id} (removed) finish monthly-brief" in r.stdout
    assert f"  ~ template {last.template}: no longer sent (the file stays)  " in r.stdout
    # deleting the file too is a deletion, located in the revision it was deleted from
    (repo / "templates/acme" / f"{last.template}.j2").unlink()
    r = fnl("plan", "--base", "HEAD", ACME, cwd=repo)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "Plan for acme-b2b: - 1 send, - 1 template"
    assert f"  - template {last.template}  (HEAD:templates/acme/{last.template}.j2:1)" in r.stdout.splitlines()


def test_the_announced_resume_step_is_where_migrate_puts_a_real_lead(repo):
    """The in-flight text and the runtime's migration are the same rule: drive a lead
    until it waits on the step that is removed, migrate it, and compare."""
    old_plan = plan_for(str(repo / ACME))
    seq = old_plan.sequence("nurture-saas")
    removed = next(s for s in seq.steps if s.template == "saas/case-study")
    t0 = minutes(datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc))  # 10:00 in New York
    lead = "wait@corp.example"
    optin = Event("optin", t0, lead, magnet="whitepaper",
                  profile={"first_name": "W", "industry": "saas", "timezone": "America/New_York"})
    # after the capability email (day 3) the lead waits on the case study (due day 7)
    state = [a.result.state for a in drive(old_plan, [optin], until=t0 + 4 * DAY)][-1]
    [running] = [r for r in state.running if r.sequence == "nurture-saas"]
    assert running.step_id == removed.id
    edit(repo / ACME / "nurture.yaml", "      - {wait: 4d, send: saas/case-study, variants: {a: 50, b: 50}}\n", "")
    new_plan = plan_for(str(repo / ACME))
    moved, notes = migrate(old_plan, new_plan, state)
    [now] = [r for r in moved.running if r.sequence == "nurture-saas"]
    text = d.render_text(d.diff(old_plan, new_plan))
    assert f"resume at {now.step_id} when it was due" in text
    assert now.due == running.due
    assert new_plan.sequence("nurture-saas").steps[now.index].id == now.step_id
    assert any(removed.id in n and now.step_id in n for n in notes)
    # and the migrated lead runs on under the new plan: the next send is the resumed step
    r = core.step(new_plan, moved, Event("tick", running.due, lead))
    assert [a.get("step") for a in r.actions if a.type == "send_email"] == [now.step_id]


def test_json_format(repo):
    the_pull_request(repo)
    text = fnl("plan", "--base", "HEAD", ACME, cwd=repo).stdout
    r = fnl("plan", "--base", "HEAD", ACME, "--format", "json", cwd=repo)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["format_version"] == d.FORMAT_VERSION
    [p] = data["plans"]
    assert p["funnel"] == "acme-b2b" and p["changed"] is True
    assert text.splitlines()[0] == f"Plan for acme-b2b: {p['summary']}"
    by_path = {c["path"]: c for c in p["changes"]}
    assert set(by_path) == {"sequences.nurture-saas.steps.recap", "sequences.nurture-saas.steps.capability.wait",
                            "scoring.thresholds.mql"}
    assert (by_path["sequences.nurture-saas.steps.capability.wait"]["before"],
            by_path["sequences.nurture-saas.steps.capability.wait"]["after"]) == ("3d", "2d")
    assert by_path["scoring.thresholds.mql"]["sign"] == "~"
    assert (by_path["scoring.thresholds.mql"]["before"], by_path["scoring.thresholds.mql"]["after"]) == ("40", "50")
    assert by_path["sequences.nurture-saas.steps.recap"]["sign"] == "+"
    assert by_path["sequences.nurture-saas.steps.recap"]["category"] == "send"
    # each change says where it is: file, line and column of the new definition, and the path found there
    wait = by_path["sequences.nurture-saas.steps.capability.wait"]
    nurture = repo / ACME / "nurture.yaml"
    row = line_of(nurture, "{wait: 2d, send: saas/capability}")
    column = nurture.read_text(encoding="utf-8").splitlines()[row - 1].index("wait") + 1
    assert wait["location"] == {"file": f"{ACME}/nurture.yaml", "line": row, "column": column, "side": "new",
                                "path": "sequences.nurture-saas.steps[1].wait"}
    assert wait["subject"] == "step nurture-saas/capability: wait"
    assert wait["text"] == "step nurture-saas/capability: wait 3d → 2d"
    assert p["old_funnel"] == "acme-b2b" and p["warnings"] == []
    for c in p["changes"]:
        assert f"  {c['sign']} {c['text']}  ({c['location']['file']}:{c['location']['line']})" in text
    assert p["new"] == plan_for(str(repo / ACME)).content_hash
    assert p["old"] != p["new"] and p["old"] == plan_for(str(REPO / ACME)).content_hash
    for note in p["in_flight"]:
        assert f"  - {note}" in text


def test_markdown_format(repo):
    the_pull_request(repo)
    r = fnl("plan", "--base", "HEAD", ACME, "--format", "markdown", cwd=repo)
    assert r.returncode == 0, r.stderr
    md = r.stdout
    assert md.startswith("### fnl plan: `acme-b2b`\n")
    assert "**+ 1 send, ~ 1 wait, ~ MQL threshold 40 → 50**" in md
    nurture = repo / ACME / "nurture.yaml"
    assert "| | change | before | after | where |" in md
    assert (f"| ~ | step nurture-saas/capability: wait | `3d` | `2d` | "
            f"`{ACME}/nurture.yaml:{line_of(nurture, '{wait: 2d, send: saas/capability}')}` |") in md
    assert (f"| + | step nurture-saas/recap |  | `send saas/industry-insight after 5d` | "
            f"`{ACME}/nurture.yaml:{line_of(nurture, 'id: recap')}` |") in md
    assert "| ~ | MQL threshold | `40` | `50` |" in md
    assert "**Leads in flight**" in md
    old, new = plan_for(str(REPO / ACME)).content_hash, plan_for(str(repo / ACME)).content_hash
    assert f"<sub>{old[:19]} → {new[:19]}</sub>" in md
    # every table row has the same number of cells, so GitHub renders it as one table
    rows = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len({ln.replace("\\|", "").count("|") for ln in rows}) == 1


def test_compiled_plans_compare_like_definitions(repo, tmp_path):
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    assert fnl("compile", ACME, "-o", before, cwd=repo).returncode == 0
    the_pull_request(repo)
    assert fnl("compile", ACME, "-o", after, cwd=repo).returncode == 0
    files = fnl("plan", before, after, "--detailed-exitcode", cwd=repo)
    based = fnl("plan", "--base", "HEAD", ACME, cwd=repo)
    assert files.returncode == 2, files.stderr
    # the same changes in the same words; plan files have no lines to point at
    located = re.compile(r"  \(HEAD:[^()]*\)$|  \([^()]*\.yaml:[0-9]+\)$", re.M)
    assert len(located.findall(based.stdout)) == 3
    assert files.stdout == located.sub("", based.stdout)
    mixed = fnl("plan", before, ACME, cwd=repo)  # an old plan file against the working definition
    assert mixed.stdout == based.stdout  # what is added or changed is located in the new definition
    same = fnl("plan", after, after, "--detailed-exitcode", cwd=repo)
    assert same.returncode == 0 and "No changes." in same.stdout


def test_template_change_is_a_change(repo):
    footer = repo / "templates/acme/_partials/footer.html.j2"
    footer.write_text(footer.read_text(encoding="utf-8") + "<p>New footer line.</p>\n", encoding="utf-8")
    r = fnl("plan", "--base", "HEAD", ACME, "--detailed-exitcode", "--format", "json", cwd=repo)
    assert r.returncode == 2, r.stderr
    [p] = json.loads(r.stdout)["plans"]
    changed = sorted(c["path"].removeprefix("templates.") for c in p["changes"])
    includes = sorted(t.name for t in plan_for(str(REPO / ACME)).templates
                      if "_partials/footer.html.j2" in (repo / "templates/acme" / f"{t.name}.j2").read_text())
    assert changed == includes and all(c["category"] == "template" for c in p["changes"])
    assert p["summary"] == f"~ {len(includes)} templates"
    # the footer's words, from the file in git and the one in the working tree, shown once at
    # the footer's line; the other templates including it say so
    lines = footer.read_text(encoding="utf-8").count("\n")
    first, *others = p["changes"]
    assert first["text"] == f'template {includes[0]}: _partials/footer.html.j2 "<p>New footer line.</p>"'
    assert (first["sign"], first["location"]["file"], first["location"]["line"]) == \
        ("+", "templates/acme/_partials/footer.html.j2", lines)
    assert [c["text"] for c in others] == [f"template {n}: includes _partials/footer.html.j2, changed above"
                                           for n in includes[1:]]


def test_a_template_edit_reads_as_its_words_at_its_line_and_a_plan_file_keeps_the_hash(repo, tmp_path):
    template = repo / "templates/acme/saas/case-study.j2"
    text = template.read_text(encoding="utf-8")
    subject = re.search(r"{% block subject %}(.*?){% endblock %}", text).group(1)
    before = tmp_path / "before.json"
    assert fnl("compile", ACME, "-o", before, cwd=repo).returncode == 0
    template.write_text(text.replace(subject, subject + " (updated)", 1), encoding="utf-8")
    r = fnl("plan", "--base", "HEAD", ACME, cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "sha256" not in r.stdout
    [change] = [ln for ln in r.stdout.splitlines() if ln.startswith("  ~ template")]
    words = (f'"{subject}" → "{subject} (updated)"' if len(subject) + 10 <= 60 else " (updated)\"")
    assert change.startswith("  ~ template saas/case-study: subject ") and words in change, change
    assert change.endswith(f"  (templates/acme/saas/case-study.j2:{line_of(template, '{% block subject %}')})")
    # a plan file holds hashes, not texts: the hash line it was
    r = fnl("plan", before, ACME, cwd=repo)
    [change] = [ln for ln in r.stdout.splitlines() if ln.startswith("  ~ template")]
    assert re.fullmatch(r"  ~ template saas/case-study: sha256 [0-9a-f]{12} → [0-9a-f]{12}  \(.*\)", change)


def test_a_new_definition_is_all_additions(repo):
    shutil.copy2(REPO / "funnels" / "reference.yaml", repo / "funnels" / "reference.yaml")
    shutil.copytree(REPO / "templates" / "reference", repo / "templates" / "reference")
    r = fnl("plan", "--base", "HEAD", "funnels", "--format", "json", "--detailed-exitcode", cwd=repo)
    assert r.returncode == 2, r.stderr
    plans = {p["funnel"]: p for p in json.loads(r.stdout)["plans"]}
    assert set(plans) == {"acme-b2b", "reference"}
    assert plans["acme-b2b"]["changed"] is False
    ref = plans["reference"]
    new = plan_for(str(repo / "funnels" / "reference.yaml"))
    assert ref["changes"] and not [c for c in ref["changes"] if c["sign"] == "-"]
    added = {c["path"] for c in ref["changes"] if c["sign"] == "+"}
    assert {f"sequences.{s.name}" for s in new.sequences} <= added
    assert {f"stages.{s.name}" for s in new.stages} <= added
    assert {f"templates.{t.name}" for t in new.templates} <= added
    assert {f"lead_magnets.{m.name}" for m in new.lead_magnets} <= added
    assert f"+ {len(new.sequences)} sequences" in ref["summary"]
    assert "+ MQL threshold none → 40" in ref["summary"]
    # the built-in CRM events are in every plan, not added by this one (reference declares none)
    assert not [c for c in ref["changes"] if c["category"] == "crm event"]
    # everything added is located in the new definition, or in its template files
    for c in ref["changes"]:
        where = c["location"]
        assert where["side"] == "new", c
        assert where["file"] == ("funnels/reference.yaml" if c["category"] != "template" else
                                 f"templates/reference/{c['path'].removeprefix('templates.')}.j2"), c


@pytest.mark.parametrize("files, noun", [
    ({"scoring.yaml": [("    email.opened: 3\n", "    email.opened: 4\n"),
                       ("    email.clicked: 8\n", "    email.clicked: 9\n")]}, "~ 2 scoring rules"),
    ({"scoring.yaml": [("    email.opened: 3\n", "    email.opened: 4\n")]}, "~ 1 scoring rule"),
    ({"funnel.yaml": [("frequency_cap: {max: 3,", "frequency_cap: {max: 4,"),
                      ('quiet_hours: {from: "20:00"', 'quiet_hours: {from: "21:00"')]}, "~ 2 policies"),
    # three keys of one handoff changed: one handoff, three lines
    ({"sales.yaml": [("    sla: 4h\n", "    sla: 2h\n"),
                     ("    notify: [crm, owner]\n    suppress: [nurture, broadcast]\n",
                      "    notify: [crm]\n    suppress: [nurture]\n")]}, "~ 1 handoff"),
])
def test_summary_plurals(repo, files, noun):
    for name, edits in files.items():
        for old, new in edits:
            edit(repo / ACME / name, old, new)
    r = fnl("plan", "--base", "HEAD", ACME, cwd=repo)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"Plan for acme-b2b: {noun}"
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("  ~ ")]) == sum(map(len, files.values())) + (
        "handoff" in noun)


def test_plan_from_a_subdirectory_and_for_one_file_of_a_split_definition(repo):
    edit(repo / ACME / "scoring.yaml", "    mql: 40\n", "    mql: 45\n")
    expected = fnl("plan", "--base", "HEAD", ACME, cwd=repo).stdout
    assert expected.startswith("Plan for acme-b2b: ~ MQL threshold 40 → 45\n")
    # locations are relative to where fnl runs, like every file name fnl prints
    at = line_of(repo / ACME / "scoring.yaml", "mql: 45")
    assert f"  ~ MQL threshold 40 → 45  ({ACME}/scoring.yaml:{at})\n" in expected
    assert fnl("plan", "--base", "HEAD", "acme", cwd=repo / "funnels").stdout == expected.replace(
        f"({ACME}/", "(acme/")
    assert fnl("plan", "--base", "HEAD", "scoring.yaml", cwd=repo / ACME).stdout == expected.replace(
        f"({ACME}/", "(")


def test_a_broken_working_tree_exits_1_with_the_location(repo):
    edit(repo / ACME / "nurture.yaml", "      - {wait: 3d, send: saas/capability}",
         "      - {wait: 3d, send: saas/capabilty}")
    r = fnl("plan", "--base", "HEAD", ACME, "--detailed-exitcode", cwd=repo)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    line = (repo / ACME / "nurture.yaml").read_text().splitlines().index("      - {wait: 3d, send: saas/capabilty}") + 1
    assert f"funnels/acme/nurture.yaml:{line}:" in r.stderr and "FNL201" in r.stderr
    assert r.stderr.rstrip("\n").splitlines()[-1] == (
        "fnl plan: cannot plan funnels/acme: the new definition has 1 error (fix it, then run fnl plan again)")


def test_bad_revision_exits_3_with_one_error_line(repo):
    r = fnl("plan", "--base", "no-such-branch", ACME, cwd=repo)
    assert r.returncode == 3
    assert r.stdout == "" and "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("fnl: error:")]
    assert len(errors) == 1 and "no-such-branch" in errors[0]
    assert re.fullmatch(r"fnl: error: .*\n(  help: .*\n)?", r.stderr)


def test_option_like_revision_is_refused(repo):
    r = fnl("plan", "--base", "--output=/tmp/x", ACME, cwd=repo)
    assert r.returncode == 3 and "Traceback" not in r.stderr


def test_base_outside_a_git_repository_exits_3(tmp_path):
    shutil.copytree(REPO / "funnels" / "acme", tmp_path / "funnels" / "acme")
    r = fnl("plan", "--base", "HEAD", ACME, cwd=tmp_path)
    assert r.returncode == 3 and "not inside a git repository" in r.stderr and "Traceback" not in r.stderr


def test_plan_needs_two_paths_without_base(repo):
    r = fnl("plan", ACME, cwd=repo)
    assert r.returncode == 3 and "OLD and NEW" in r.stderr


def test_unreadable_plan_file_exits_3(repo, tmp_path):
    junk = tmp_path / "junk.json"
    junk.write_text('{"format_version": 99}', encoding="utf-8")
    r = fnl("plan", junk, ACME, cwd=repo)
    assert r.returncode == 3 and "junk.json" in r.stderr and "Traceback" not in r.stderr


def test_diff_in_process():
    plan = plan_for(str(REPO / ACME))
    same = d.diff(plan, plan)
    assert not same.changed and d.summary(same) == "No changes." and same.in_flight == ()
    assert d.render_text(same) == "Plan for acme-b2b: No changes.\n"


@pytest.mark.parametrize("keep, outcomes", [
    (lambda i, n: True, {"stays", "exits"}),
    (lambda i, n: i % 2 == 0, {"stays", "resumes", "finishes", "exits"}),
    (lambda i, n: i == 0, {"stays", "finishes", "exits"}),
    (lambda i, n: i == n - 1, {"stays", "resumes", "exits"}),
    (lambda i, n: False, {"finishes", "exits"}),
])
def test_step_moves_for_a_whole_sequence_is_step_move_for_each_step(keep, outcomes):
    """The in-flight notes take every step's move in one pass; it is the runtime's rule."""
    import dataclasses

    from engine.migrate import step_move, step_moves

    old = plan_for(str(REPO / ACME))
    # the steps `keep` keeps, in every sequence but the first, which is removed
    sequences = tuple(dataclasses.replace(s, steps=tuple(x for i, x in enumerate(s.steps) if keep(i, len(s.steps))))
                      for s in old.sequences[1:])
    new = dataclasses.replace(old, sequences=sequences)
    seen = set()
    for seq in old.sequences:
        moves = step_moves(old, new, seq.name)
        assert moves == {s.id: step_move(old, new, seq.name, s.id) for s in seq.steps}
        seen |= {m.outcome for m in moves.values()}
    assert seen == outcomes


def test_a_broken_base_says_the_old_definition_at_the_revision(repo):
    edit(repo / ACME / "nurture.yaml", "      - {wait: 3d, send: saas/capability}",
         "      - {wait: 3d, send: saas/capabilty}")
    git("commit", "-q", "-am", "a typo", cwd=repo)
    edit(repo / ACME / "nurture.yaml", "      - {wait: 3d, send: saas/capabilty}",
         "      - {wait: 3d, send: saas/capability}")
    r = fnl("plan", "--base", "HEAD", ACME, cwd=repo)
    assert r.returncode == 1 and r.stdout == "" and "HEAD:funnels/acme/nurture.yaml:" in r.stderr
    assert r.stderr.rstrip("\n").splitlines()[-1] == (
        "fnl plan: cannot plan funnels/acme: the old definition (HEAD) has 1 error (fix it, then run fnl plan again)")
