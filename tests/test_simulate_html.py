"""`fnl simulate --format html`: one self-contained page that opens offline, byte-identical
for the same seed across processes, every piece of user text escaped, charts drawn by
matplotlib as inline SVG, and a real headless Chromium (Debian's, driven by playwright) that
opens it with no console error and no request leaving the page."""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from conftest import REPO, clean_env, open_offline, run_fnl

REFERENCE = "funnels/reference.yaml"
HOSTILE = '<script>alert("fnl")</script>$x$'


def simulate_html(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "fnl.py", "simulate", REFERENCE, "--leads", "200", "--format", "html",
                             "-o", str(out), *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env())


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> List[Path]:
    """The reference funnel's page, seed 3, written by two processes side by side; and seed 4."""
    where = tmp_path_factory.mktemp("html")
    outs = [where / "a.html", where / "b.html", where / "other.html"]
    procs = [simulate_html(outs[0], "--seed", "3"), simulate_html(outs[1], "--seed", "3"),
             simulate_html(outs[2], "--seed", "4")]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    return outs


def test_the_same_seed_gives_byte_identical_html_across_processes(pages: List[Path]) -> None:
    a, b, other = (p.read_bytes() for p in pages)
    assert a == b
    assert a != other  # the seed matters: the page is not a constant
    text = a.decode("utf-8")
    assert text.startswith("<!DOCTYPE html>\n") and text.endswith("</html>\n")
    assert "Forecast for reference" in text and "Stages" in text and "Weekly volumes" in text


def test_the_page_has_the_report_and_three_matplotlib_charts(pages: List[Path]) -> None:
    text = pages[0].read_text(encoding="utf-8")
    assert text.count("<svg ") == 3 and text.count("</svg>") == 3
    assert "<?xml" not in text and "<!DOCTYPE svg" not in text  # the SVG element only, not an SVG file
    # Drawn by matplotlib (its SVG backend's marks), not by hand.
    assert text.count('id="figure_1"') == 3 and text.count('id="axes_1"') == 3
    for title in ("Stages", "Conversion", "Time from arrival, days", "Emails", "Sequence steps",
                  "Weekly volumes", "Sales reps"):
        assert f"<h2>{title}" in text
    assert "<table>" in text and '<p class="headline">200 leads' in text
    assert "Behaviour model: funnels/reference.behavior.yaml" in text
    # No date anywhere (matplotlib writes one into its SVG metadata unless told not to).
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text)


def test_nothing_on_the_page_reaches_outside_it(pages: List[Path]) -> None:
    text = pages[0].read_text(encoding="utf-8")
    refs = re.findall(r"""\b(?:src|href|xlink:href|action|poster|srcset)\s*=\s*["']?([^"'\s>]*)""", text, re.I)
    assert refs, "the charts refer to their own definitions"
    assert all(ref.startswith(("#", "data:")) for ref in refs), refs
    assert not re.search(r"url\(\s*['\"]?(?!#|data:)", text), "a CSS url() to outside the page"
    assert "@import" not in text and "<script" not in text.lower() and "<link" not in text.lower()
    assert "https://" not in text.replace('"http://www.w3.org/2000/svg"', "")
    assert not re.search(r"http://(?!www\.w3\.org/(2000/svg|1999/xlink)\")", text)  # only XML namespaces
    assert "Content-Security-Policy" in text and "default-src &#x27;none&#x27;" in text


def _forecast(**kw: object):
    from engine.simulate import forecast

    return forecast(REFERENCE, None, leads=200, days=None, seed=1, start=None, **kw)


def test_user_text_is_escaped_everywhere() -> None:
    """Names the page shows (funnel, stages, templates, steps, reps) carrying markup and `$`
    come out as text: in the tables, the headline and the charts' labels."""
    from engine.simulate.html import render_html

    fc = _forecast(runs=1)
    f = fc.figures
    rename = {s.name: HOSTILE + s.name for s in f.stages}
    figures = dataclasses.replace(
        f, funnel=HOSTILE,
        stages=tuple(dataclasses.replace(s, name=rename[s.name]) for s in f.stages),
        headline=tuple(rename[n] for n in f.headline),
        conversions=tuple(dataclasses.replace(c, source=rename[c.source], target=rename[c.target])
                          for c in f.conversions),
        biggest_drop=tuple(rename[n] for n in f.biggest_drop) if f.biggest_drop else None,
        time_to=tuple(dataclasses.replace(t, stage=rename[t.stage]) for t in f.time_to),
        steps=tuple(dataclasses.replace(s, template=HOSTILE, step=HOSTILE) for s in f.steps),
        weekly=dataclasses.replace(f.weekly, entered=tuple((rename[n], c) for n, c in f.weekly.entered)),
        reps=tuple(dataclasses.replace(r, rep=HOSTILE) for r in f.reps))
    page = render_html(dataclasses.replace(fc, figures=figures))
    assert "<script" not in page.lower() and "</script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;fnl&quot;)&lt;/script&gt;$x$" in page  # HTML text
    # In the charts (SVG text, escaped by matplotlib) the name is there literally, `$` too.
    svg = "".join(re.findall(r"<svg .*?</svg>", page, re.S))
    assert "&lt;script&gt;" in svg and "$x$" in svg


def test_a_file_name_with_markup_is_escaped_on_a_real_run(tmp_path: Path) -> None:
    folder = tmp_path / '<img src=x onerror="alert(1)">'
    folder.mkdir()
    behaviour = folder / "reference.behavior.yaml"
    shutil.copy(REPO / "funnels" / "reference.behavior.yaml", behaviour)
    out = tmp_path / "report.html"
    done = run_fnl("simulate", REFERENCE, "--behavior", behaviour, "--leads", "200", "--format", "html", "-o", out,
                   timeout=180)
    assert done.returncode == 0, done.stderr
    page = out.read_text(encoding="utf-8")
    assert "<img" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_several_runs_draw_intervals() -> None:
    from engine.simulate.html import render_html

    page = render_html(_forecast(runs=2))
    assert page.count("<svg ") == 3 and "2 runs (seeds 1–2)" in page
    assert "95 % interval of the mean over the runs" in page


def test_only_the_html_format_imports_matplotlib() -> None:
    probe = ("import sys, fnl\n"
             "fnl.run(['validate', 'funnels/reference.yaml'])\n"
             "fnl.run(['simulate', 'funnels/reference.yaml', '--leads', '20', '--format', 'json'])\n"
             "print('matplotlib' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=180,
                          env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("False")


def test_headless_chromium_opens_the_page_offline_and_draws_the_charts(pages: List[Path]) -> None:
    def inspect(page: object) -> tuple:
        boxes = page.eval_on_selector_all(  # type: ignore[attr-defined]
            "svg", "els => els.map(e => { const r = e.getBoundingClientRect();"
                   " return [r.width, r.height, e.querySelectorAll('path, use, text').length]; })")
        requests = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")  # type: ignore[attr-defined]
        return page.title(), boxes, requests  # type: ignore[attr-defined]

    (title, boxes, requests), problems = open_offline(pages[0], inspect)
    assert title.startswith("Forecast for reference")
    assert problems == [] and requests == [], problems + requests
    assert len(boxes) >= 3
    for width, height, marks in boxes:
        assert width > 100 and height > 50 and marks > 10, boxes
