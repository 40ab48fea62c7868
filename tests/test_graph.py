"""`fnl graph`: Mermaid (checked with Mermaid's own parser) and Graphviz dot pictures that
show every stage, transition, lead magnet, handoff and sequence of a funnel.

Mermaid's parser runs in node from tests/js (`npm install` there; CI does). The dot output
is rendered with the `dot` binary when it is installed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine import graph  # noqa: E402
from engine.pipeline import plan_for  # noqa: E402

EXAMPLES = ["funnels/acme", "funnels/newsletter-to-demo.yaml", "funnels/reference.yaml"]
JS = REPO / "tests" / "js"


def fnl(*args: Any, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    return subprocess.run([sys.executable, str(REPO / "fnl.py"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


def mermaid_missing() -> Optional[str]:
    """Why Mermaid's own parser cannot run here, or None."""
    if shutil.which("node") is None:
        return ("node is not installed: Mermaid's parser runs in node "
                "(install node and npm, then `npm install` in tests/js)")
    if not (JS / "node_modules" / "mermaid").is_dir():
        return "tests/js/node_modules is missing: run `npm install` in tests/js (CI does)"
    return None


def dot_missing() -> Optional[str]:
    """Why Graphviz cannot render here, or None."""
    if shutil.which("dot") is None:
        return "Graphviz `dot` is not installed (apt-get install graphviz; CI does)"
    return None


def mermaid_parse(path: Path) -> subprocess.CompletedProcess:
    reason = mermaid_missing()
    if reason:
        pytest.skip(reason)
    return subprocess.run(["node", str(JS / "mermaid_parse.mjs"), str(path)], capture_output=True, text=True,
                          timeout=120)


def unescape(label: str) -> str:
    return label.replace("#quot;", '"').replace("#lt;", "<").replace("#gt;", ">").replace("#35;", "#")


NODE = re.compile(r'^\s*(\w+)(?:\[\[|\[/|\(\[|\{\{|\[|>)"([^"]*)"')
EDGE = re.compile(r'^\s*(\w+) (-->|-\.->|---)(?:\|"([^"]*)"\|)? (\w+)\s*$')
MAGNET_EDGE = re.compile(r'^\s*(\w+)\[/"([^"]*)"/\] --> (\w+)\s*$')
EVENT_EDGE = re.compile(r'^\s*(\w+)>"([^"]*)"\] -\.-> (\w+)\s*$')


def parse_mermaid(text: str) -> Tuple[Dict[str, str], List[Tuple[str, str, str, str]]]:
    """Node labels by ID, and edges as (source label, arrow, edge label, target label)."""
    labels: Dict[str, str] = {}
    raw_edges = []
    for line in text.splitlines():
        m = MAGNET_EDGE.match(line) or EVENT_EDGE.match(line)
        if m:
            labels[m.group(1)] = unescape(m.group(2))
            raw_edges.append((m.group(1), "-->" if "[/" in line else "-.->", "", m.group(3)))
            continue
        m = EDGE.match(line)
        if m:
            raw_edges.append((m.group(1), m.group(2), unescape(m.group(3) or ""), m.group(4)))
            continue
        m = NODE.match(line)
        if m:
            labels[m.group(1)] = unescape(m.group(2))
    edges = [(labels[a], arrow, label, labels[b]) for a, arrow, label, b in raw_edges]
    return labels, edges


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1]


@pytest.fixture(scope="module", params=EXAMPLES)
def example(request):
    r = fnl("graph", request.param)
    assert r.returncode == 0, r.stderr
    return request.param, plan_for(str(REPO / request.param)), r.stdout


# -- Mermaid ---------------------------------------------------------------------------------

def test_mermaid_shows_every_stage_transition_magnet_handoff_and_sequence(example):
    _, plan, text = example
    assert text.startswith("flowchart LR\n")
    labels, edges = parse_mermaid(text)
    shown = set(labels.values())
    for stage in plan.stages:
        assert stage.name in shown, stage.name
    for t in plan.transitions:
        label = t.when.source if t.when else ""
        if t.on:
            label = f"on {t.on}" + (f" and {label}" if label else "")
        for src in t.sources:
            matching = [e for e in edges if e[0] == src and e[1] == "-->" and e[3] == t.to]
            assert matching, f"no edge {src} -> {t.to}"
            assert any(label.startswith(e[2].rstrip("…")) and e[2] for e in matching), (label, matching)
    for m in plan.lead_magnets:
        assert (f"{m.name} ({m.kind})", "-->", "", m.enters) in edges
    for h in plan.handoff:
        [node] = [e for e in edges if e[0] == h.stage and e[1] == "---"]
        assert node[3].startswith("handoff ")
        if h.assign.kind == "round_robin":
            assert h.assign.reps[0].split("@")[0] in node[3]
    for seq in plan.sequences:
        [label] = [v for v in shown if v.split(" · ")[0] == seq.name]
        sends = sum(1 for s in seq.steps if s.action == "send")
        assert f"{seq.kind}, {sends} email" in label
        for stage in seq.stages:
            assert (stage, "-.->", "", label) in edges
        if seq.on and not seq.stages:
            assert (seq.on, "-.->", "", label) in edges
    # nothing is drawn that the plan does not have
    stage_edges = {(e[0], e[3]) for e in edges if e[1] == "-->" and e[0] in {s.name for s in plan.stages}}
    assert stage_edges == {(src, t.to) for t in plan.transitions for src in t.sources}


def test_mermaid_parses_in_mermaids_own_parser(example, tmp_path):
    name, _, text = example
    path = tmp_path / "funnel.mmd"
    path.write_text(text, encoding="utf-8")
    r = mermaid_parse(path)
    assert r.returncode == 0 and r.stdout.startswith("ok"), (name, r.stdout, r.stderr)


def test_mermaid_parser_check_is_real(tmp_path):
    """The parser script rejects broken Mermaid, so the check above can fail."""
    path = tmp_path / "broken.mmd"
    path.write_text('flowchart LR\n  a["unclosed] --> b\n', encoding="utf-8")
    r = mermaid_parse(path)
    assert r.returncode == 1 and r.stdout.startswith("error")


def test_graph_is_deterministic_and_matches_in_process(example):
    name, plan, text = example
    assert graph.mermaid(plan) == text
    assert fnl("graph", name).stdout == text
    assert f"%% fnl plan {plan.funnel} {plan.content_hash[:19]}" in text


CONSENT = "I agree to receive email. I can unsubscribe at any time."
TEMPLATE = """\
{% block subject %}Hello {{ lead.first_name }}{% endblock %}
{% block html -%}<p>Hi.</p><p>{{ sender.postal_address }} <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>{%- endblock %}
{% block text -%}Hi. {{ sender.postal_address }} Unsubscribe: {{ unsubscribe_url }}{%- endblock %}
"""


def nasty_funnel(tmp_path: Path, condition: str) -> Path:
    root = tmp_path / "nasty"
    (root / "templates" / "n").mkdir(parents=True)
    (root / "templates" / "n" / "hello.j2").write_text(TEMPLATE, encoding="utf-8")
    (root / "funnel.yaml").write_text(textwrap.dedent(f"""\
        fnl: 1
        funnel: nasty
        templates: templates
        sender: {{from: "N <n@n.example>", postal_address: "1 Main St", unsubscribe_url: "https://n.example/u"}}
        profile:
          first_name: {{type: string, required: true}}
          company: {{type: string}}
        stages: [subscriber, customer]
        lead_magnets:
          guide: {{kind: ebook, consent: "{CONSENT}", enters: subscriber}}
        transitions:
          - {{from: subscriber, to: customer, when: {json.dumps(condition)}}}
        sequences:
          welcome:
            kind: onboarding
            stage: subscriber
            steps:
              - {{send: n/hello}}
        """), encoding="utf-8")
    return root


@pytest.mark.parametrize("condition", [
    """company == 'Say "hi" [now] (ok) {x}'""",
    """company == "[[brackets]] and ((parens))" """.strip(),
    """company in ['<b>bold</b>', '#hash', 'a|b', 'semi;colon', '%% not a comment']""",
    """company == 'end"]'""",
])
def test_quotes_and_brackets_in_a_condition_still_parse(tmp_path, condition):
    root = nasty_funnel(tmp_path, condition)
    r = fnl("graph", root)
    assert r.returncode == 0, r.stderr
    labels, edges = parse_mermaid(r.stdout)
    [edge] = [e for e in edges if e[0] == "subscriber" and e[3] == "customer"]
    assert edge[2].rstrip("…") and condition.startswith(edge[2].rstrip("…"))  # escaped, then read back
    dot = fnl("graph", root, "--format", "dot")
    assert dot.returncode == 0
    assert_balanced(dot.stdout)
    # the dot label reads back as the condition (long ones are cut at 60 characters with …)
    assert any(s.rstrip("…") and condition.startswith(s.rstrip("…")) and len(s) >= min(len(condition), 59)
               for s in dot_tokens(dot.stdout)[1])
    if not dot_missing():
        render_dot(dot.stdout, tmp_path)
    if not mermaid_missing():
        path = tmp_path / "nasty.mmd"
        path.write_text(r.stdout, encoding="utf-8")
        parsed = mermaid_parse(path)
        assert parsed.returncode == 0 and parsed.stdout.startswith("ok"), (r.stdout, parsed.stdout)
    missing = [reason for reason in (dot_missing(), mermaid_missing()) if reason]
    if missing:  # everything else was checked; say what was not
        pytest.skip("; ".join(missing))


# -- dot ---------------------------------------------------------------------------------------

def dot_tokens(text: str) -> Tuple[List[str], List[str]]:
    """Braces outside quoted strings, and the quoted strings themselves (unescaped).
    Raises AssertionError on an unterminated string."""
    braces: List[str] = []
    strings: List[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            j, buf = i + 1, []
            while True:
                assert j < len(text), "unterminated string"
                if text[j] == "\\" and j + 1 < len(text):
                    buf.append(text[j + 1])
                    j += 2
                    continue
                if text[j] == '"':
                    break
                buf.append(text[j])
                j += 1
            strings.append("".join(buf))
            i = j + 1
            continue
        if ch in "{}[]":
            braces.append(ch)
        i += 1
    return braces, strings


def assert_balanced(text: str) -> None:
    braces, _ = dot_tokens(text)
    stack = []
    for b in braces:
        if b in "{[":
            stack.append(b)
        else:
            assert stack and stack.pop() == {"}": "{", "]": "["}[b], "unbalanced"
    assert not stack, "unclosed"


def render_dot(text: str, tmp_path: Path) -> None:
    reason = dot_missing()
    if reason:
        pytest.skip(reason)
    path = tmp_path / "funnel.dot"
    path.write_text(text, encoding="utf-8")
    r = subprocess.run(["dot", "-Tsvg", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "<svg" in r.stdout


def test_dot_is_well_formed_and_complete(example, tmp_path):
    name, plan, _ = example
    r = fnl("graph", name, "--format", "dot")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert text.startswith(f'digraph "{plan.funnel}" {{') and text.rstrip().endswith("}")
    assert_balanced(text)
    _, strings = dot_tokens(text)
    for stage in plan.stages:
        assert stage.name in strings
    for seq in plan.sequences:
        assert any(s.split(" · ")[0] == seq.name for s in strings)
    for t in plan.transitions:
        label = t.when.source if t.when else ""
        if t.on:
            label = f"on {t.on}" + (f" and {label}" if label else "")
        assert any(s and label.startswith(s.rstrip("…")) for s in strings), label
    edges = re.findall(r"^\s*(\w+) -> (\w+) \[label=", text, flags=re.M)
    assert len(edges) == sum(len(t.sources) for t in plan.transitions)
    assert graph.dot(plan) == text


@pytest.mark.parametrize("name", EXAMPLES)
def test_dot_renders_to_svg(name, tmp_path):
    r = fnl("graph", name, "--format", "dot")
    render_dot(r.stdout, tmp_path)
    svg = subprocess.run(["dot", "-Tsvg"], input=r.stdout, capture_output=True, text=True, timeout=120).stdout
    plan = plan_for(str(REPO / name))
    for stage in plan.stages:
        assert f">{stage.name}</text>" in svg


def test_graph_of_a_bad_definition_exits_1(tmp_path):
    root = nasty_funnel(tmp_path, "company == 'x'")
    (root / "funnel.yaml").write_text((root / "funnel.yaml").read_text().replace("to: customer", "to: custmer"))
    r = fnl("graph", root)
    assert r.returncode == 1 and "funnel.yaml:" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
