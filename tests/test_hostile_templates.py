"""Hostile templates from pull requests: each ends in a located finding, fast and in
bounded memory, never in exit 0 without a finding nor in exit 4 (internal error).

The repros come from an audit: single C-level calls that build gigabytes
(`ljust(10**9)`, `batch`, `tojson(indent=...)`, `+`), widths smuggled into `format`,
strings doubled in a loop, parser crashes (deep nesting, huge literals), twenty
templates that each loop until the deadline, `[Undefined]` printed as output, and
subjects with line separators or control characters.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine import render_box, templates  # noqa: E402
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
    steps: [STEPS]
    exit: {stage_at_least: mql}
entries: {imported: {on: lead.imported, enters: subscriber, basis: legitimate_interest}}
"""
FOOTER = "{{ sender.postal_address }} {{ unsubscribe_url }}"
N = 999_999_999


def _email(html: str, subject: str = "Hi") -> str:
    """An email whose HTML part carries `html` on line 3."""
    return ("{% block subject %}" + subject + "{% endblock %}\n"
            f"{{% block html %}}<a href=\"{{{{ unsubscribe_url }}}}\">u</a> {FOOTER}\n{html}{{% endblock %}}\n"
            f"{{% block text %}}{FOOTER}{{% endblock %}}\n")


def _funnel(tmp_path: Path, emails: List[str]) -> Path:
    """A funnel sending one email per entry of `emails` (n/e0, n/e1, ...)."""
    (tmp_path / "templates" / "n").mkdir(parents=True)
    steps = ", ".join(f"{{id: e{i}, wait: {i}d, send: n/e{i}}}" if i else "{send: n/e0}" for i in range(len(emails)))
    (tmp_path / "funnel.yaml").write_text(DEFINITION.replace("STEPS", steps), encoding="utf-8")
    for i, text in enumerate(emails):
        (tmp_path / "templates" / "n" / f"e{i}.j2").write_text(text, encoding="utf-8")
    return tmp_path / "funnel.yaml"


def _validate(target: Path) -> Tuple[int, float, int, List[dict]]:
    """`fnl validate --format json` in a subprocess: (exit code, CPU seconds, peak memory
    in MB of the command and its worker, problems). The time is CPU time, the command's
    and its render worker's, so that a busy machine (a parallel test run) does not decide
    the test; the wall-clock time is bounded too, generously, so a hang still fails."""
    measure = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - start\n"
        "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "peak = use.ru_maxrss // 1024\n"
        "sys.stdout.write(f'{p.returncode} {use.ru_utime + use.ru_stime} {peak} {wall}\\n' + p.stdout)\n"
        "sys.stderr.write(p.stderr)\n")
    done = subprocess.run([sys.executable, "-c", measure, sys.executable, str(REPO / "fnl.py"), "validate",
                           str(target), "--format", "json"], capture_output=True, text=True, timeout=120)
    head, _, body = done.stdout.partition("\n")
    code, took, peak, wall = head.split()
    assert int(code) != 4, done.stderr
    assert float(wall) < 15, f"the command took {float(wall):.1f} s of wall-clock time"
    problems = [p for d in json.loads(body)["definitions"] for p in d["problems"]] if body.strip() else []
    return int(code), float(took), int(peak), problems


# (template text on line 3 of the HTML part, a piece of the message)
MEMORY = [
    ("{{ 'x'.ljust(%d) }}" % N, "`ljust` width"),
    ("{{ 'x'.center(%d) }}" % N, "`center` width"),
    ("{{ 'x'.zfill(%d) }}" % N, "`zfill` width"),
    ("{{ 'x'.rjust(%d) }}" % N, "`rjust` width"),
    ("{{ '{0:>{1}}'.format('x', %d) }}" % N, "format width"),
    ("{{ '{:{w}}'.format(1, w=%d) }}" % N, "format width"),
    ("{{ '%%*d' %% (%d, 1) }}" % N, "format width"),
    ("{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}"
     "{% endmacro %}{{ f('x', 40) }}", "a value longer than"),
    ("{% set l = ['x'] %}{% for i in range(40) %}{{ l.append(l[-1] ~ l[-1]) }}{% endfor %}", "a value longer than"),
    ("{{ range(99999)|batch(%d, 'x')|list|length }}" % N, "`batch` size"),
    ("{{ range(99999)|list|tojson(indent=%d) }}" % N, "`tojson` indent"),
    ("{{ (range(99999)|list|tojson(indent=16))|length }}", "a value longer than"),
    ("{% set l = ['x'] %}{% for i in range(40) %}{{ l.append(l[-1] + l[-1]) }}{% endfor %}", "a value longer than"),
    ("{% set l = [[1]] %}{% for i in range(40) %}{{ l.append(l[-1] + l[-1]) }}{% endfor %}", "a value longer than"),
    ("{% set l = [1] %}{% for i in range(40) %}{{ l.extend(l) }}{% endfor %}", "a value longer than"),
    ("{{ ('x' * 99999).replace('', 'y' * 99999)|length }}", "`replace` would build"),
    ("{{ (range(99999)|join('\\n'))|indent(99999)|length }}", "`indent` would build"),
    ("{% set x = ((10 ** 1000) ** 1000) ** 1000 %}", "a number larger than"),
    # Nothing bounds these arguments; the worker's memory limit stops them.
    ("{{ (range(50000)|list)|map('string')|map('center', 99999)|join|length }}", "more than 128 MB"),
    ("{{ ('x' * 99999)|list|map('center', 99999)|list|length }}", "more than 128 MB"),
]


@pytest.mark.parametrize("html, message", MEMORY)
def test_memory_attacks_are_one_located_finding(tmp_path: Path, html: str, message: str) -> None:
    target = _funnel(tmp_path, [_email(html)])
    start = time.perf_counter()
    [result] = check_paths((str(target),), Selection())
    assert time.perf_counter() - start < 2
    assert [(p.code, p.location.file.endswith("n/e0.j2"), p.location.line) for p in result.problems] == [
        ("FNL224", True, 3)]
    assert message in result.problems[0].message
    assert result.problems[0].help.startswith(("use smaller counts", "look for a huge count"))


def test_memory_attacks_stay_under_300_mb_in_one_command(tmp_path: Path) -> None:
    """All of them in one `fnl validate`: one finding each, and the command with its
    worker never holds more than 300 MB (each alone took about 1 GB, some 8 GB)."""
    target = _funnel(tmp_path, [_email(html) for html, _ in MEMORY])
    code, took, peak, problems = _validate(target)
    assert code == 1
    assert peak < 300, f"{peak} MB"
    assert took < 2 + len(MEMORY) * 0.5
    located = sorted((p["code"], Path(p["file"]).name, p["line"]) for p in problems)
    assert located == sorted(("FNL224", f"e{i}.j2", 3) for i in range(len(MEMORY)))


@pytest.mark.parametrize("html", [
    "{{ 'x'.ljust(%d) }}" % N,
    "{{ range(99999)|batch(%d, 'x')|list|length }}" % N,
    "{{ (range(50000)|list)|map('string')|map('center', 99999)|join|length }}",
])
def test_one_attack_takes_under_2_s_and_300_mb_as_a_command(tmp_path: Path, html: str) -> None:
    code, took, peak, problems = _validate(_funnel(tmp_path, [_email(html)]))
    assert (code, [(p["code"], p["line"]) for p in problems]) == (1, [("FNL224", 3)])
    assert took < 2.5 and peak < 300, (took, peak)


def test_a_runaway_loop_stops_at_the_deadline(tmp_path: Path) -> None:
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    code, took, peak, problems = _validate(_funnel(tmp_path, [_email(loop)]))
    assert code == 1 and [(p["code"], p["line"]) for p in problems] == [("FNL224", 3)]
    assert "longer than 1 s" in problems[0]["message"]
    assert took < 2.5 and peak < 300, (took, peak)


def test_twenty_slow_templates_share_one_render_budget(tmp_path: Path) -> None:
    """Each loops until its deadline; the first one spends the STALL_SECONDS that slow
    renders share, and every template after it is a finding of its own (`was not
    checked`), not silence: 20 runaway loops cost one deadline, not 20."""
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    target = _funnel(tmp_path, [_email(loop) for _ in range(20)])
    start = time.perf_counter()
    [result] = check_paths((str(target),), Selection(select=("FNL224",)))
    took = time.perf_counter() - start
    assert took < templates.RENDER_SECONDS + 1.0, took
    assert sorted(Path(p.location.file).name for p in result.problems) == sorted(f"e{i}.j2" for i in range(20))
    slow = [p for p in result.problems if "longer than" in p.message]
    skipped = [p for p in result.problems if "was not checked" in p.message]
    assert slow and skipped and len(slow) + len(skipped) == 20
    assert all("ran out" in p.message for p in skipped)


def test_slow_renders_that_finish_count_too_and_span_every_funnel_validate_checks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A template that stops just short of its deadline is not a failure, but its time
    counts against the budget for slow renders; `fnl validate` of several funnels has one
    such budget, so slow templates cannot add up funnel by funnel. (Every render counts as
    slow here, and the budget is a few milliseconds, so this does not depend on speed.)"""
    monkeypatch.setattr(templates, "SLOW_RENDER_SECONDS", 0.0)
    monkeypatch.setattr(templates, "STALL_SECONDS", 0.000001)
    for k in range(3):
        _funnel(tmp_path / f"f{k}", [_email("{{ 1 + %d }}" % k), _email("{{ 2 + %d }}" % k)])
    results = check_paths((str(tmp_path),), Selection(select=("FNL224",)))
    messages = [p.message for r in results for p in r.problems]
    assert len(results) == 3 and len(messages) >= 5, messages
    assert all("was not checked" in m and "slow templates" in m for m in messages), messages


def test_slow_templates_in_four_funnels_take_under_2_s_in_all(tmp_path: Path) -> None:
    """Twenty runaway loops over four funnels, as one `fnl validate` of their folder."""
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    for k in range(4):
        _funnel(tmp_path / f"f{k}", [_email(loop + "{# %d %d #}" % (k, i)) for i in range(5)])
    code, took, peak, problems = _validate(tmp_path)
    assert code == 1 and len(problems) == 20, problems
    assert took < 2.5 and peak < 300, (took, peak)


def test_a_command_wide_session_spans_funnels(tmp_path: Path) -> None:
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    targets = [_funnel(tmp_path / f"f{k}", [_email(loop + "{# %d #}" % k)]) for k in range(3)]
    with templates.render_session(templates.RenderClock(1.5)):
        results = check_paths(tuple(str(t) for t in targets), Selection(select=("FNL224",)))
    messages = [p.message for r in results for p in r.problems]
    assert len(messages) == 3
    assert sum("was not checked" in m for m in messages) >= 1


def test_a_budget_skip_is_not_remembered(tmp_path: Path) -> None:
    """A template skipped because the clock ran out renders in the next command."""
    target = _funnel(tmp_path, [_email("{{ 1 + 1 }}")])
    with templates.render_session(templates.RenderClock(0)):
        [skipped] = check_paths((str(target),), Selection(select=("FNL224",)))
    assert [p.code for p in skipped.problems] == ["FNL224"]
    [again] = check_paths((str(target),), Selection(select=("FNL224",)))
    assert again.problems == ()


@pytest.mark.parametrize("html, message, column", [
    ("{{ " + "(" * 69 + "1" + ")" * 69 + " }}", "brackets nested more than", 34),
    ("{{ " + "not " * 954 + "1 }}", "`not`, `-` or `+` in a row", 124),
    ("{{ unsubscribe_url" + "|e" * 972 + " }}", "an expression nested more than", 1),
    ("{{ unsubscribe_url" + ".a" * 300 + " }}", "an expression nested more than", 1),
    ("{{ " + "1" * 4301 + " }}", "a number with more than", 4),
    ("{{ 0x" + "f" * 5000 + " }}", "a number with more than", 1),
    ("{{ 0b" + "1" * 20000 + " }}", "a number with more than", 1),
    ("{% for i in range(1) %}" * 25 + "{% endfor %}" * 25, "loops nested more than", 1),
    ("{% if true %}" * 1000 + "{% endif %}" * 1000, "tags nested more than", 389),
    ("{{ " + "[" * 200 + "]" * 200 + " }}", "brackets nested more than", 34),
])
def test_parser_crashes_are_located_syntax_findings(tmp_path: Path, html: str, message: str, column: int) -> None:
    target = _funnel(tmp_path, [_email(html)])
    start = time.perf_counter()
    [result] = check_paths((str(target),), Selection())
    assert time.perf_counter() - start < 2
    assert [(p.code, p.location.line, p.location.column) for p in result.problems] == [("FNL220", 3, column)]
    assert message in result.problems[0].message and result.problems[0].help


def test_a_parser_crash_in_a_partial_is_a_render_finding(tmp_path: Path) -> None:
    target = _funnel(tmp_path, [_email('{% include "_deep.j2" %}')])
    (tmp_path / "templates" / "_deep.j2").write_text("{{ " + "not " * 954 + "1 }}", encoding="utf-8")
    code, _took, _peak, problems = _validate(target)
    assert code == 1 and [(p["code"], p["line"]) for p in problems] == [("FNL224", 3)]
    assert "`not`" in problems[0]["message"]


@pytest.mark.parametrize("html, message", [
    ("{% set l = [[]] %}{% for i in range(3000) %}{{ l.append([l[-1]]) }}{% endfor %}{{ l[-1] }}", "nests too deeply"),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recurses"),
])
def test_deep_data_and_recursion_are_located(tmp_path: Path, html: str, message: str) -> None:
    target = _funnel(tmp_path, [_email(html)])
    [result] = check_paths((str(target),), Selection())
    assert [(p.code, p.location.line) for p in result.problems] == [("FNL224", 3)]
    assert message in result.problems[0].message


@pytest.mark.parametrize("html", [
    "{{ lead|map(attribute='__class__')|list }}",
    "{{ [unsubscribe_url, sender]|map(attribute='__class__')|list }}",
    "{{ [sender|attr('nothing')] }}",
])
def test_undefined_never_renders_as_text(tmp_path: Path, html: str) -> None:
    target = _funnel(tmp_path, [_email(html)])
    [result] = check_paths((str(target),), Selection())
    assert [(p.code, p.location.line) for p in result.problems] == [("FNL224", 3)]


@pytest.mark.parametrize("subject, message", [
    ("Hi{{ '\\u2028' }}there", "U+2028 LINE SEPARATOR"),
    ("Hi{{ '\\u2029' }}there", "U+2029 PARAGRAPH SEPARATOR"),
    ("Hi{{ '\\x85' }}there", "U+0085 NEXT LINE"),
    ("Hi{{ '\\x0b' }}there", "U+000B VERTICAL TAB"),
    ("Hi{{ '\\x0c' }}there", "U+000C FORM FEED"),
    ("Hi{{ '\\x00' }}there", "U+0000 NUL"),
    ("Hi{{ '\\x1b' }}there", "U+001B"),
    ("Hi{{ '\\r' }}there", "line break"),
    ("{{ 'x' * 100000 }}{{ 'x' * 100000 }}", "200,000 characters long"),
    # A subject that is nothing but a separator is not stripped to nothing and passed.
    ("{{ '\\u2028' }}", "U+2028 LINE SEPARATOR"),
    ("{{ '\\x85' }}", "U+0085 NEXT LINE"),
    ("{{ '\\x0b' }}", "U+000B VERTICAL TAB"),
    ("{{ '\\x0c' }}", "U+000C FORM FEED"),
    ("{{ '  ' }}", "is empty"),
    ("", "is empty"),
    ("Hi{{ '\\u200b' }}there", "U+200B ZERO WIDTH SPACE"),
    ("Hi{{ '\\u202e' }}there", "U+202E RIGHT-TO-LEFT OVERRIDE"),
])
def test_subject_control_characters_and_length(tmp_path: Path, subject: str, message: str) -> None:
    target = _funnel(tmp_path, [_email("ok", subject)])
    [result] = check_paths((str(target),), Selection())
    assert [(p.code, p.location.line) for p in result.problems] == [("FNL223", 1)]
    assert message in result.problems[0].message


def test_a_plain_subject_with_a_tab_and_accents_passes(tmp_path: Path) -> None:
    target = _funnel(tmp_path, [_email("ok", "Héllo\tthere — 50% off 👩\u200d💻\n")])
    [result] = check_paths((str(target),), Selection())
    assert result.problems == ()


def test_one_worker_serves_every_template_of_a_command(tmp_path: Path) -> None:
    target = _funnel(tmp_path, [_email("{{ %d }}" % i) for i in range(5)])
    [result] = check_paths((str(target),), Selection())
    assert result.problems == ()
    if not render_box._usable():
        pytest.skip("no fork here: templates render in-process")
    [worker] = [w for job, w in render_box._WORKERS.items() if job is templates._render_job]
    pid = worker.pid
    target2 = _funnel(tmp_path / "again", [_email("{{ %d }}" % (i + 100)) for i in range(5)])
    check_paths((str(target2),), Selection())
    assert worker.pid == pid and pid != os.getpid()


def _sleep(seconds: float) -> str:
    time.sleep(seconds)  # one C call: no Python-level deadline interrupts it
    return "done"


def _allocate(size: int) -> int:
    return len(bytearray(size))


def _die() -> None:
    os._exit(3)


@pytest.mark.skipif(not render_box._usable(), reason="no fork here")
def test_the_worker_is_killed_past_its_deadline_and_replaced() -> None:
    start = time.perf_counter()
    with pytest.raises(render_box.WorkerLost) as lost:
        render_box.run(_sleep, 0.2, 30)
    assert lost.value.reason == "time"
    assert time.perf_counter() - start < 0.2 + render_box.GRACE_SECONDS + 1
    assert render_box.run(_sleep, 1, 0) == "done"


@pytest.mark.skipif(not render_box._usable(), reason="no fork here")
def test_the_worker_cannot_allocate_past_its_memory_limit() -> None:
    with pytest.raises(render_box.WorkerLost) as lost:
        render_box.run(_allocate, 5, 4 * 1024 ** 3)
    assert lost.value.reason == "memory"
    assert render_box.run(_allocate, 5, 1024) == 1024
    with pytest.raises(render_box.WorkerLost):
        render_box.run(_die, 5)
    assert render_box.run(_allocate, 5, 10) == 10


def test_without_a_process_to_spare_templates_render_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    for worker in render_box._WORKERS.values():
        worker.stop()
    monkeypatch.setattr(os, "fork", no_fork)
    target = _funnel(tmp_path, [_email("{{ 6 * 7 }}"), _email("{{ 'x'.ljust(%d) }}" % N)])
    [result] = check_paths((str(target),), Selection())
    assert [(p.code, Path(p.location.file).name, p.location.line) for p in result.problems] == [
        ("FNL224", "e1.j2", 3)]


def test_a_huge_partial_is_never_read_whole(tmp_path):
    """A 300 MB partial next to an email: reading stops at the 256 KiB limit, no memory blow-up."""
    import subprocess
    import sys

    root = tmp_path / "f"
    (root / "templates" / "n").mkdir(parents=True)
    (root / "templates" / "_p").mkdir(parents=True)
    (root / "funnel.yaml").write_text(
        "fnl: 1\nfunnel: h\ntemplates: templates\n"
        'sender: {from: "Acme <hello@acme.example>", postal_address: "1 Main St, Springfield"}\n'
        "stages: [subscriber, mql]\n"
        'transitions:\n  - {from: subscriber, to: mql, when: "score >= 1"}\n'
        "entries: {imported: {on: lead.imported, enters: subscriber, basis: legitimate_interest}}\n"
        "sequences:\n  s:\n    kind: nurture\n    stage: subscriber\n    steps: [{send: n/one}]\n"
        "    exit: {stage_at_least: mql}\n", encoding="utf-8")
    (root / "templates" / "n" / "one.j2").write_text(
        '{% block subject %}Hi{% endblock %}{% block html %}{% include "_p/big.j2" %}'
        "{{ sender.postal_address }} {{ unsubscribe_url }}{% endblock %}"
        "{% block text %}{{ sender.postal_address }} {{ unsubscribe_url }}{% endblock %}", encoding="utf-8")
    with open(root / "templates" / "_p" / "big.j2", "wb") as fh:
        fh.truncate(300 * 1024 * 1024)  # sparse: costs no disk
    repo = Path(__file__).resolve().parent.parent
    # The peak of fnl's own process (VmHWM starts afresh at exec, unlike ru_maxrss, which keeps
    # the forking test process's) and of the render workers it forks.
    code = ("import resource, sys; sys.path.insert(0, sys.argv.pop(1)); import fnl; rc = fnl.run(sys.argv[1:]); "
            "hwm = next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')); "
            "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
            "print(f'@@ {max(hwm, kids)}', file=sys.stderr); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, str(repo), "validate", str(root)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "internal error" not in r.stderr
    peak_kb = int(r.stderr.rsplit("@@ ", 1)[1].split()[0])
    assert peak_kb < 300 * 1024, peak_kb
