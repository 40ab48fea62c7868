"""`fnl render`: an email as a lead receives it, for a lead from a file or a synthetic lead
of a persona or segment, every A/B variant; and `--all`, one offline gallery of every
email, opened in a real headless Chromium. Real definitions and templates from disk, the
CLI as a subprocess and through click's runner."""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
from click.testing import CliRunner

import fnl
from conftest import REPO, open_offline, run_fnl
from engine.authoring import render as rd
from engine.errors import EXIT_PROBLEMS, EXIT_USAGE, UsageError
from engine.pipeline import compiled_for

ACME = "funnels/acme"


def test_a_persona_gets_every_variant_printed_and_written(tmp_path: Path) -> None:
    proc = run_fnl("render", ACME, "saas/case-study", "--persona", "executive", "-o", f"{tmp_path}/")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # Both variants of the A/B test, each with its own subject, then its text part.
    assert "── saas/case-study, variant a (nurture)" in out and "── saas/case-study, variant b (nurture)" in out
    subjects = re.findall(r"^Subject: (.+)$", out, re.M)
    assert len(subjects) == 2 and subjects[0] != subjects[1]
    assert "Unsubscribe with one click" in out  # the footer partial rendered into the text part
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["saas-case-study.a.html", "saas-case-study.b.html"]
    for name in files:
        page = (tmp_path / name).read_text(encoding="utf-8")
        assert "Loopwise" in page and "<p>" in page
    assert "note:" not in proc.stderr  # an executive in saas gets this email


def test_a_lead_from_a_file_is_the_lead_and_its_data_stays_text(tmp_path: Path) -> None:
    lead = tmp_path / "lead.json"
    lead.write_text(json.dumps({"first_name": "<script>alert(1)</script>Zoë", "industry": "finance",
                                "role": "cxo", "employees": 1200, "region": "emea",
                                "timezone": "Europe/Berlin"}), encoding="utf-8")
    out = tmp_path / "one.html"
    proc = run_fnl("render", ACME, "finance/case-study", "--lead", lead, "--variant", "b", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "variant b" in proc.stdout and "variant a" not in proc.stdout
    assert "Hi <script>alert(1)</script>Zoë," in proc.stdout  # the text part: as typed
    page = out.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;Zoë" in page and "<script>" not in page  # escaped in HTML


def test_a_segment_that_never_gets_the_email_is_said(tmp_path: Path) -> None:
    proc = run_fnl("render", ACME, "saas/case-study", "--segment", "finance", "-o", tmp_path / "x.html")
    assert proc.returncode == 0, proc.stderr
    assert "note: a lead in segment finance" in proc.stderr and "never gets saas/case-study" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.a.html", "x.b.html"]


def test_synthetic_leads_are_in_their_persona_and_segment() -> None:
    c = compiled_for(str(REPO / ACME))
    for segment in [g.name for g in c.plan.segments]:
        for persona in [g.name for g in c.plan.personas]:
            profile = rd.synthetic_lead(c.funnel, c.plan, segment, persona)
            assert rd._groups(c.plan, profile) == (segment, persona), profile
    with pytest.raises(UsageError, match="no such persona"):
        rd.synthetic_lead(c.funnel, c.plan, None, "astronaut")


@pytest.mark.parametrize("content, says", [
    ("{\"first_name\": \"Ana\",\n  \"industry\": }", "lead.json:2:15: not JSON"),
    ("[1, 2]", "a JSON list, not an object"),
    ("{\"first_name\": \"Ana\", \"shoe_size\": 44}", "unknown profile attribute `shoe_size`"),
    ("{\"first_name\": \"Ana\", \"industry\": \"saas\", \"employees\": \"many\"}",
     "`employees` must be integer, not str"),
    ("{\"first_name\": \"Ana\", \"industry\": \"mining\"}", "`industry` must be one of saas, manufacturing, finance"),
])
def test_a_bad_lead_file_is_one_line_and_exit_3(tmp_path: Path, content: str, says: str) -> None:
    lead = tmp_path / "lead.json"
    lead.write_text(content, encoding="utf-8")
    proc = run_fnl("render", ACME, "saas/case-study", "--lead", lead, "-o", tmp_path / "x.html")
    assert proc.returncode == EXIT_USAGE, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("fnl: error: --lead ") and says in first, first
    assert "Traceback" not in proc.stderr and "help:" in proc.stderr
    assert not (tmp_path / "x.html").exists()


def test_names_that_do_not_exist_get_a_suggestion() -> None:
    runner = CliRunner()
    got = runner.invoke(fnl.cli, ["render", ACME, "saas/case-studdy"])
    assert got.exit_code == EXIT_USAGE
    assert "no such template in acme-b2b" in got.output and "did you mean `saas/case-study`?" in got.output
    got = runner.invoke(fnl.cli, ["render", ACME, "saas/case-study", "--persona", "astronaut"])
    assert got.exit_code == EXIT_USAGE and "its personas: executive" in got.output
    got = runner.invoke(fnl.cli, ["render", ACME, "--all"])
    assert got.exit_code == EXIT_USAGE and "--all needs -o DIR" in got.output
    got = runner.invoke(fnl.cli, ["render", ACME])
    assert got.exit_code == EXIT_USAGE and "name the TEMPLATE" in got.output


def _reference_copy(tmp_path: Path, extra_html: str) -> Path:
    """The reference funnel and its templates, with `extra_html` added to the first email's HTML part."""
    shutil.copytree(REPO / "templates" / "reference", tmp_path / "templates" / "reference")
    (tmp_path / "funnels").mkdir()
    shutil.copy(REPO / "funnels" / "reference.yaml", tmp_path / "funnels" / "reference.yaml")
    day0 = tmp_path / "templates" / "reference" / "nurture" / "day-0.j2"
    text = day0.read_text(encoding="utf-8")
    day0.write_text(text.replace("<p>The Reference Co team</p>", f"<p>The Reference Co team</p>{extra_html}"),
                    encoding="utf-8")
    return tmp_path / "funnels" / "reference.yaml"


def test_a_template_that_fails_for_this_lead_is_located(tmp_path: Path) -> None:
    funnel = _reference_copy(tmp_path, "{% if lead.first_name == 'Zed' %}{{ 1 // 0 }}{% endif %}")
    lead = tmp_path / "lead.json"
    lead.write_text(json.dumps({"first_name": "Zed", "industry": "saas"}), encoding="utf-8")
    assert run_fnl("validate", funnel).returncode == 0  # the sample lead renders: lint is content
    proc = run_fnl("render", funnel, "nurture/day-0", "--lead", lead, "-o", tmp_path / "x.html")
    assert proc.returncode == EXIT_PROBLEMS, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert re.match(r".*templates/reference/nurture/day-0\.j2:\d+:\d+: error FNL224: `nurture/day-0` fails to render "
                    r"for this lead: .*division", first), first


REMOTE = ('<img src="https://tracker.example/open.gif" width="1" height="1">'
          '<div style="background:url(https://cdn.example/bg.png)">x</div>'
          '<link rel="stylesheet" href="https://cdn.example/email.css">'
          '<script src="https://cdn.example/x.js"></script><script>console.error("ran")</script>'
          '<img srcset="//cdn.example/a.png 2x" alt="logo">')


def test_offline_keeps_links_and_drops_every_fetch() -> None:
    got = rd.offline('<a href="https://acme.example/x">read</a>' + REMOTE)
    assert '<a href="https://acme.example/x">read</a>' in got
    assert "tracker.example" not in got and "cdn.example" not in got and "<script" not in got.lower()


def test_the_gallery_opens_offline_in_chromium(tmp_path: Path) -> None:
    funnel = _reference_copy(tmp_path, REMOTE)
    out = tmp_path / "gallery"
    proc = run_fnl("render", funnel, "--all", "-o", out, timeout=120)
    assert proc.returncode == 0, proc.stderr
    page = (out / "index.html").read_text(encoding="utf-8")
    c = compiled_for(str(funnel))
    sends = sum(max(1, len(s.variants)) for seq in c.plan.sequences for s in seq.steps if s.action == "send")
    assert page.count("<iframe") == sends  # one audience (no segments or personas), every email once
    assert "tracker.example" not in page and "cdn.example" not in page
    def inspect(view: object) -> Tuple[str, List[str]]:
        frames = [f for f in view.frames if f != view.main_frame]  # type: ignore[attr-defined]
        return view.title(), [f.evaluate("document.body ? document.body.innerText : ''")  # type: ignore[attr-defined]
                              for f in frames]

    (title, texts), problems = open_offline(out / "index.html", inspect, (1400, 900))
    assert title == "reference: every email"
    assert problems == [], problems
    assert len(texts) == sends and all("Reference Co" in t for t in texts), texts[:2]


def test_the_gallery_of_acme_has_every_audience(tmp_path: Path) -> None:
    got = CliRunner().invoke(fnl.cli, ["render", ACME, "--all", "-o", str(tmp_path)])
    assert got.exit_code == 0, got.output
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    for segment in ("saas", "manufacturing", "finance"):
        for persona in ("executive", "manager", "practitioner"):
            assert f'id="segment-{segment}-persona-{persona}"' in page
    assert page.count("saas/case-study · variant a") == page.count("saas/case-study · variant b") == 3
    assert "finance/case-study" in page and sys.getsizeof(page) < 20_000_000
