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
"""

FOOTER = "{{ sender.postal_address }} {{ unsubscribe_url }}"


# The hostile line is line 3; a part that renders too much is reported at its block (line 2).
@pytest.mark.parametrize("html, message, line", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "longer than 2 s", 3),
    ("{{ 'x' * 1000000000 }}", "repetition longer than", 3),
    ("{{ 2 ** 100000 }}", "exponent larger than", 3),
    ("{% for i in range(100000) %}{{ 'abcdefghij' * 100 }}{% endfor %}", "more than 1024 KiB", 2),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe", 3),
    ("{{ lead | attr('__class__') }}", "unsafe", 3),
])
def test_hostile_template_is_one_located_problem(tmp_path: Path, html: str, message: str, line: int) -> None:
    (tmp_path / "templates" / "n").mkdir(parents=True)
    (tmp_path / "funnel.yaml").write_text(DEFINITION, encoding="utf-8")
    (tmp_path / "templates" / "n" / "hostile.j2").write_text(
        "{% block subject %}Hi{% endblock %}\n"
        f"{{% block html %}}<a href=\"{{{{ unsubscribe_url }}}}\">u</a> {FOOTER}\n{html}{{% endblock %}}\n"
        f"{{% block text %}}{FOOTER}{{% endblock %}}\n", encoding="utf-8")
    start = time.perf_counter()
    [result] = check_paths((str(tmp_path / "funnel.yaml"),), Selection(select=("FNL224",)))
    assert time.perf_counter() - start < 10
    assert [(p.code, p.location.line) for p in result.problems] == [("FNL224", line)]
    assert message in result.problems[0].message
