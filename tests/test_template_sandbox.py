"""Hostile templates from a pull request: each gets one located FNL224, quickly, and
nothing blows up (no hang, no gigabyte string, no escape from the sandbox)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.check import check_paths  # noqa: E402
from engine.lint.runner import Selection  # noqa: E402

DEFINITION = """\
fnl: 1
funnel: h
templates: templates
sender: {from: "Acme <hello@acme.example>", postal_address: "1 Main St, Springfield"}
stages: [subscriber, mql]
transitions:
  - {from: subscriber, to: mql, when: "score >= 1"}
sequences:
  s:
    kind: nurture
    stage: subscriber
    steps: [{send: n/hostile}]
    exit: {stage_at_least: mql}
entries: {imported: {on: lead.imported, enters: subscriber, basis: legitimate_interest}}
"""

FOOTER = "{{ sender.postal_address }} {{ unsubscribe_url }}"


def _write_hostile(tmp_path: Path, html: str) -> None:
    """The definition and one email whose HTML part carries `html` on line 3."""
    (tmp_path / "templates" / "n").mkdir(parents=True)
    (tmp_path / "funnel.yaml").write_text(DEFINITION, encoding="utf-8")
    (tmp_path / "templates" / "n" / "hostile.j2").write_text(
        "{% block subject %}Hi{% endblock %}\n"
        f"{{% block html %}}<a href=\"{{{{ unsubscribe_url }}}}\">u</a> {FOOTER}\n{html}{{% endblock %}}\n"
        f"{{% block text %}}{FOOTER}{{% endblock %}}\n", encoding="utf-8")


# The hostile line is line 3; a part that renders too much is reported at its block (line 2).
@pytest.mark.parametrize("html, message, line", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "longer than 1 s", 3),
    ("{{ 'x' * 1000000000 }}", "repetition longer than", 3),
    ("{{ 2 ** 100000 }}", "exponent larger than", 3),
    ("{% for i in range(100000) %}{{ 'abcdefghij' * 100 }}{% endfor %}", "more than 1024 KiB", 2),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe", 3),
    ("{{ lead | attr('__class__') }}", "unsafe", 3),
])
def test_hostile_template_is_one_located_problem(tmp_path: Path, html: str, message: str, line: int) -> None:
    _write_hostile(tmp_path, html)
    start = time.perf_counter()
    [result] = check_paths((str(tmp_path / "funnel.yaml"),), Selection(select=("FNL224",)))
    assert time.perf_counter() - start < 10
    assert [(p.code, p.location.line) for p in result.problems] == [("FNL224", line)]
    assert message in result.problems[0].message


@pytest.mark.parametrize("html, message", [
    ('{{ "%999999999d" % 1 }}', "format width"),
    ('{{ "x" | center(999999999) }}', "`center` size"),
    ('{{ "x\\n" | indent(999999999) }}', "`indent` size"),
    ('{{ "{:999999999}".format(1) }}', "format width"),
    ('{{ (range(99999) | list) | join("x" * 99999) }}', "`join` would build"),
    ('{% include "../../../../../../etc/passwd" %}', "not a file inside the template directory"),
])
def test_size_and_path_attacks_are_refused(tmp_path: Path, html: str, message: str) -> None:
    _write_hostile(tmp_path, html)
    start = time.perf_counter()
    [result] = check_paths((str(tmp_path / "funnel.yaml"),), Selection(select=("FNL224",)))
    assert time.perf_counter() - start < 10
    assert [p.code for p in result.problems] == ["FNL224"]
    assert message in result.problems[0].message


def test_links_and_pipes_among_templates_are_refused_without_reading_them(tmp_path: Path) -> None:
    import os

    (tmp_path / "templates" / "n").mkdir(parents=True)
    (tmp_path / "funnel.yaml").write_text(DEFINITION.replace("steps: [{send: n/hostile}]",
                                                             "steps: [{send: n/a}, {id: b, wait: 7d, send: n/b}]"),
                                          encoding="utf-8")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOKEN=hunter2\n", encoding="utf-8")
    os.symlink(secret, tmp_path / "templates" / "n" / "a.j2")
    os.mkfifo(tmp_path / "templates" / "n" / "b.j2")
    start = time.perf_counter()
    [result] = check_paths((str(tmp_path / "funnel.yaml"),), Selection())
    assert time.perf_counter() - start < 10
    messages = {p.message for p in result.problems if p.code == "FNL220"}
    assert any("link to a file outside the template directory" in m for m in messages)
    assert any("not a regular file" in m for m in messages)
    assert all("hunter2" not in p.source_line and "hunter2" not in p.message for p in result.problems)


def test_macros_imports_and_top_level_set_work_in_every_part(tmp_path: Path) -> None:
    """Parts render block by block; names defined outside the blocks still reach them."""
    (tmp_path / "templates" / "n").mkdir(parents=True)
    (tmp_path / "templates" / "_p").mkdir()
    (tmp_path / "funnel.yaml").write_text(DEFINITION, encoding="utf-8")
    (tmp_path / "templates" / "_p" / "macros.j2").write_text(
        '{% macro button(url, label) %}<a href="{{ url }}">{{ label }}</a>{% endmacro %}\n', encoding="utf-8")
    (tmp_path / "templates" / "n" / "hostile.j2").write_text(
        '{% import "_p/macros.j2" as m %}{% set greeting = "Hello" %}{% macro sig() %}The team{% endmacro %}\n'
        "{% block subject %}{{ greeting }} from Acme{% endblock %}\n"
        '{% block html %}{{ m.button("https://acme.example", "Read") }} {{ sig() }} ' + FOOTER
        + ' <a href="{{ unsubscribe_url }}">u</a>{% endblock %}\n'
        "{% block text %}{{ greeting }} {{ sig() }} " + FOOTER + "{% endblock %}\n", encoding="utf-8")
    [result] = check_paths((str(tmp_path / "funnel.yaml"),), Selection())
    assert result.problems == ()
    from engine.templates import render, sample_context

    out = render(tmp_path / "templates", "n/hostile", sample_context(result.funnel))
    assert out.subject == "Hello from Acme"
    assert '<a href="https://acme.example">Read</a> The team' in out.html
    assert out.text.startswith("Hello The team")
