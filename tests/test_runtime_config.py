"""The runtime config file (`fnl run --config FILE`, `schemas/runtime.schema.json`): every
mistake is one located problem (file:line:col) with its fix, an unknown key names the key
meant, a secret written in the file is refused with where it goes instead and is never
shown, and the adapters built from the file are those `--actions` builds for the same
entries."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Tuple

import jsonschema
import pytest
from click.testing import CliRunner

import fnl
from conftest import REPO, clean_env
from engine.errors import ProblemsFound, UsageError
from engine.runtime import config as rc

ACME = str(REPO / "funnels" / "acme")
EXAMPLE = REPO / "docs" / "runtime.yaml"
SCHEMA = json.loads((REPO / "schemas" / "runtime.schema.json").read_text(encoding="utf-8"))


def problems_of(tmp_path: Path, text: str) -> List[Any]:
    path = tmp_path / "runtime.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProblemsFound) as caught:
        rc.load_config(path)
    return list(caught.value.problems)


# -- the example and the schema ------------------------------------------------------------------

def test_the_example_config_is_valid_and_read_as_written() -> None:
    config = rc.load_config(EXAMPLE)
    smtp, webhook, jsonl = config.actions
    assert smtp == rc.SmtpOut("smtp.acme.example", 587, None, "FNL_SMTP_USER", "FNL_SMTP_PASSWORD",
                              rc.Dkim("s1", "acme.example", "FNL_DKIM_KEY"))
    assert webhook == rc.WebhookOut("https://crm.acme.example/hooks/fnl")
    assert jsonl == rc.JsonlOut((EXAMPLE.parent / "actions.jsonl").as_posix())  # from the config's folder
    assert config.limit("ACME.example") == rc.Limit("acme.example", rc.Rate(100, 60), (
        rc.WarmupDay(1, 50), rc.WarmupDay(2, 100), rc.WarmupDay(8, 1000)))
    assert config.retention == rc.Retention(400 * 1440, 400 * 1440)
    first = EXAMPLE.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/runtime.schema.json"  # editors check it as they type


def test_the_schemas_own_examples_are_valid() -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    for example in SCHEMA["examples"]:
        validator.validate(example)
    for name, definition in SCHEMA["definitions"].items():
        for example in definition.get("examples", []):
            jsonschema.Draft7Validator({"definitions": SCHEMA["definitions"], **definition}).validate(example)


def test_a_warmup_day_takes_the_entry_of_the_last_day_up_to_it() -> None:
    limit = rc.Limit("acme.example", None, (rc.WarmupDay(1, 50), rc.WarmupDay(2, 100), rc.WarmupDay(8, 1000)))
    assert [limit.cap(d) for d in (1, 2, 3, 7, 8, 400)] == [50, 100, 100, 100, 1000, 1000]
    assert rc.Limit("acme.example", rc.Rate(5, 60)).cap(3) is None


# -- located problems with their fix ---------------------------------------------------------------

HEAD = "fnl-runtime: 1\n"
CASES = [
    # (config, line, column, code, in the message, in the help)
    (HEAD + "actions:\n  - smpt: {host: 127.0.0.1}\n", 3, 5, "FNL100", "unknown key `smpt`", "did you mean `smtp`?"),
    (HEAD + "actions:\n  - smtp: {host: 127.0.0.1, prot: 25}\n", 3, 29, "FNL100", "unknown key `prot`",
     "did you mean `port`?"),
    (HEAD + "retention: {events: 400d, delivered: 400d}\n", 2, 27, "FNL100", "unknown key `delivered`",
     "did you mean `delivered_actions`?"),
    (HEAD + "limit:\n  acme.example: {rate: 5/h}\n", 2, 1, "FNL100", "unknown key `limit`", "did you mean `limits`?"),
    ("fnl-runtime: 2\n", 1, 14, "FNL103", "expected 1, found 2", "write 1"),
    ("actions: [{jsonl: {path: '-'}}]\n", 1, 1, "FNL101", "missing required key `fnl-runtime`", "add `fnl-runtime:`"),
    (HEAD + "actions:\n  - smtp: {host: 127.0.0.1, port: \"2525\"}\n", 3, 35, "FNL102", "expected an integer",
     "remove the quotes: 2525"),
    (HEAD + "actions:\n  - smtp: {host: 127.0.0.1, port: 70000}\n", 3, 35, "FNL105", "out of range", "1 to 65535"),
    (HEAD + "actions:\n  - smtp: {host: 127.0.0.1}\n    jsonl: {path: x}\n", 3, 5, "FNL108", "choose one",
     "keep exactly one of: jsonl, smtp, webhook"),
    (HEAD + "actions:\n  - webhook: {url: http://crm.example/hook}\n", 3, 20, "FNL104",
     "not a valid webhook address", "https://crm.example/hooks/fnl"),
    (HEAD + "actions:\n  - smtp: {host: 127.0.0.1, user_env: FNL_U}\n", 3, 29, "FNL108",
     "`user_env` needs `password_env` beside it", "add `password_env:`"),
    (HEAD + "limits:\n  acme.example: {rate: 100/w}\n", 3, 24, "FNL104", "`100/w` is not a valid rate",
     "N/h (at most N emails an hour) or N/d"),
    (HEAD + "limits:\n  Acme.example: {rate: 100/h}\n", 3, 3, "FNL104", "`Acme.example` is not a sending domain",
     "in lower case, such as acme.example"),
    (HEAD + "limits:\n  acme.example: {}\n", 3, 17, "FNL106", "is empty", "give one of: rate, warmup"),
    (HEAD + "limits:\n  acme.example:\n    warmup:\n      - {day: 2, max: 50}\n", 5, 15, "FNL105",
     "the warm-up starts on day 1, not day 2", "{day: 1, max: N}"),
    (HEAD + "limits:\n  acme.example:\n    warmup:\n      - {day: 1, max: 50}\n      - {day: 8, max: 500}\n"
     "      - {day: 2, max: 100}\n", 7, 15, "FNL105", "day 2 is listed after day 8", "in order, each once"),
    (HEAD + "limits:\n  acme.example:\n    warmup:\n      - {day: 1, max: 0}\n", 5, 23, "FNL105", "out of range",
     "from 1 to"),
    (HEAD + "retention: {events: 12h}\n", 2, 21, "FNL111", "`12h` is shorter than a day", "1d to 3650d"),
    (HEAD + "retention: {events: 400 days}\n", 2, 21, "FNL104", "not a valid window", "such as `2d`"),
    (HEAD + "actions:\n  - smtp: {host: a.example}\n  - smtp: {host: b.example}\n", 4, 11, "FNL107",
     "a second smtp adapter", "keep one smtp adapter"),
    (HEAD + "actions:\n  - jsonl: {path: a}\nactions:\n  - jsonl: {path: b}\n", 4, 1, "FNL016",
     "duplicate key `actions`", "remove or rename one"),
]


@pytest.mark.parametrize("text, line, column, code, message, help", CASES,
                         ids=[f"{c[3]}-{c[4][:30]}" for c in CASES])
def test_each_mistake_is_one_located_problem_with_its_fix(tmp_path: Path, text: str, line: int, column: int,
                                                         code: str, message: str, help: str) -> None:
    found = problems_of(tmp_path, text)
    assert len(found) == 1, [(p.code, p.message) for p in found]
    problem = found[0]
    assert (problem.location.line, problem.location.column, problem.code) == (line, column, code), problem
    assert problem.location.file.endswith("runtime.yaml")
    assert message in problem.message and help in problem.help, problem


def test_the_cli_prints_the_problems_and_touches_no_database(tmp_path: Path) -> None:
    path = tmp_path / "runtime.yaml"
    path.write_text(HEAD + "actions:\n  - smpt: {host: 127.0.0.1}\n", encoding="utf-8")
    result = CliRunner().invoke(fnl.cli, ["run", ACME, "--db", str(tmp_path / "a.db"), "--until",
                                          "2026-03-03T00:00:00Z", "--config", str(path)])
    assert result.exit_code == 1, result.output
    first = result.output.splitlines()[0]
    assert first.endswith("runtime.yaml:3:5: error FNL100 actions[0].smpt: unknown key `smpt` in actions[0]"), first
    assert "help: did you mean `smtp`?" in result.output
    assert not (tmp_path / "a.db").exists()


def test_no_such_config_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--config .*nope.yaml: no such file"):
        rc.load_config(tmp_path / "nope.yaml")


# -- secrets --------------------------------------------------------------------------------------

SECRETS = [
    ("actions:\n  - smtp: {host: 127.0.0.1, password: hunter2-secret}\n", "password", "`password_env: FNL_...`"),
    ("actions:\n  - smtp:\n      host: 127.0.0.1\n      user: hunter2-secret\n", "user", "`user_env: FNL_...`"),
    ("actions:\n  - smtp:\n      host: 127.0.0.1\n      dkim: {selector: s1, domain: acme.example, key_env: K,\n"
     "             private_key: \"-----BEGIN PRIVATE KEY-----hunter2-secret\"}\n", "private_key", "`key_env: FNL_...`"),
    ("actions:\n  - webhook: {url: \"https://crm.example/h\", api_key: hunter2-secret}\n", "api_key",
     "environment variable"),
    ("smtp_password: hunter2-secret\n", "smtp_password", "environment variable"),
]


@pytest.mark.parametrize("text, key, help", SECRETS, ids=[s[1] for s in SECRETS])
def test_a_secret_in_the_file_is_refused_with_where_it_goes_and_never_shown(tmp_path: Path, text: str, key: str,
                                                                              help: str) -> None:
    found = [p for p in problems_of(tmp_path, HEAD + text) if p.path and p.path[-1] == key]
    assert len(found) == 1, found
    problem = found[0]
    assert "would hold a secret, and secrets are never written in the runtime config" in problem.message
    assert help in problem.help and problem.source_line == ""
    line = (HEAD + text).splitlines()[problem.location.line - 1]
    assert line[problem.location.column - 1:].startswith(key)  # at the key itself
    proc = subprocess.run([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(tmp_path / "a.db"),
                           "--until", "2026-03-03T00:00:00Z", "--config", str(tmp_path / "runtime.yaml")],
                          capture_output=True, text=True, timeout=120, env=clean_env())
    assert proc.returncode == 1 and "would hold a secret" in proc.stderr, proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout


def test_a_value_written_where_a_variable_is_named_is_not_shown(tmp_path: Path) -> None:
    found = problems_of(tmp_path, HEAD + "actions:\n  - smtp: {host: h.example, user_env: FNL_U, "
                                         "password_env: \"hunter2 secret\"}\n")
    assert len(found) == 1
    problem = found[0]
    assert problem.message.startswith("`password_env` must be the name of an environment variable")
    assert "hunter2" not in problem.message + problem.help + problem.source_line + "".join(problem.related)


# -- the adapters: from the file, as from --actions -------------------------------------------------

def describe(adapter: Any, probe: Tuple[dict, str]) -> Tuple[Any, ...]:
    """What an adapter is: its type and target (a JSON Lines adapter: the line it writes)."""
    inner = getattr(adapter, "inner", adapter)
    name = type(inner).__name__
    if name == "Smtp":
        return name, inner.host, inner.port, inner.dkim is None
    if name == "Webhook":
        return name, inner.url
    return (name,)


def test_the_adapters_from_the_file_are_those_of_actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.pipeline import compiled_for
    from engine.runtime.db import Database

    monkeypatch.setenv("FNL_SIGNING_KEY", "s" * 32)
    monkeypatch.delenv("FNL_SMTP_USER", raising=False)
    monkeypatch.delenv("FNL_SMTP_PASSWORD", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    path = out / "runtime.yaml"
    path.write_text(HEAD + "actions:\n  - smtp: {host: 127.0.0.1, port: 2525}\n"
                    "  - webhook: {url: \"https://crm.example/hooks/fnl\"}\n  - jsonl: {path: actions.jsonl}\n"
                    "  - jsonl: {path: \"-\"}\n", encoding="utf-8")
    strings = ("smtp://127.0.0.1:2525", "webhook:https://crm.example/hooks/fnl", f"jsonl:{out / 'actions.jsonl'}",
               "jsonl:-")
    from_file = rc.load_config(path)
    from_strings = rc.runtime_config(None, strings)
    assert [type(a) for a in from_file.actions] == [rc.SmtpOut, rc.WebhookOut, rc.JsonlOut, rc.JsonlOut]
    assert tuple(Path(a.path).resolve() if isinstance(a, rc.JsonlOut) and a.path != "-" else a
                 for a in from_file.actions) == \
        tuple(Path(a.path).resolve() if isinstance(a, rc.JsonlOut) and a.path != "-" else a
              for a in from_strings.actions)
    compiled = compiled_for(ACME)
    db = Database(str(tmp_path / "a.db")).scope(compiled.plan.funnel, compiled.plan.sender.from_)
    action = {"type": "stage_changed", "at": "2026-03-02T14:30:00Z", "lead": "a@example.com"}
    printed: List[str] = []
    try:
        built = []
        for source in (from_file, strings):  # a config, or the --actions strings themselves
            with contextlib.ExitStack() as stack:
                adapters = rc.open_adapters(source, compiled, db, stack, echo=printed.append)
                built.append([describe(a, (action, "k")) for a in adapters])
                for adapter in adapters:
                    if type(adapter).__name__ == "Jsonl":
                        adapter(action, "k1")
        assert built[0] == built[1] == [("Smtp", "127.0.0.1", 2525, True), ("Webhook", "https://crm.example/hooks/fnl"),
                                        ("Jsonl",), ("Jsonl",)]
        line = json.dumps({**action, "idempotency_key": "k1"}, sort_keys=True)
        assert (out / "actions.jsonl").read_text(encoding="utf-8") == line + "\n" + line + "\n"  # the same file
        assert printed == [line, line]
        with contextlib.ExitStack() as stack:
            assert [describe(a, (action, "k")) for a in rc.open_adapters((), compiled, db, stack,
                                                                          echo=printed.append)] == [("Jsonl",)]
    finally:
        db.close()


@pytest.mark.parametrize("text, said", [
    ("foo", "--actions foo: not an adapter"),
    ("jsonl:", "--actions jsonl:: not an adapter"),
    ("smtp://127.0.0.1:notaport", "--actions smtp://127.0.0.1:notaport: not an SMTP address"),
    ("smtp://", "--actions smtp://: not an SMTP address"),
])
def test_a_bad_actions_string_is_a_usage_error(text: str, said: str) -> None:
    with pytest.raises(UsageError) as caught:
        rc.from_actions((text,))
    assert caught.value.message == said


def test_config_and_actions_deliver_together(tmp_path: Path) -> None:
    """`--config` with a jsonl adapter and `--actions jsonl:` another: each file gets every
    action, the same lines a run with `--actions` alone writes."""
    events = REPO / "tests" / "events" / "acme-dana.jsonl"
    cfg = tmp_path / "runtime.yaml"
    cfg.write_text(HEAD + "actions:\n  - jsonl: {path: from-config.jsonl}\n", encoding="utf-8")

    def run(db: str, *more: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "fnl.py"), "run", ACME, "--db", str(tmp_path / db),
                               "--events", str(events), "--until", "2026-06-01T00:00:00Z", *more],
                              capture_output=True, text=True, timeout=120, env=clean_env())

    both = run("a.db", "--config", str(cfg), "--actions", f"jsonl:{tmp_path / 'from-actions.jsonl'}")
    assert both.returncode == 0, both.stderr
    alone = run("b.db", "--actions", f"jsonl:{tmp_path / 'alone.jsonl'}")
    assert alone.returncode == 0, alone.stderr
    lines = (tmp_path / "alone.jsonl").read_text(encoding="utf-8")
    assert lines.count("\n") == 18
    assert (tmp_path / "from-config.jsonl").read_text(encoding="utf-8") == lines
    assert (tmp_path / "from-actions.jsonl").read_text(encoding="utf-8") == lines


def test_credentials_are_never_sent_in_the_clear_to_another_machine(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.pipeline import compiled_for
    from engine.runtime.db import Database

    monkeypatch.setenv("FNL_SIGNING_KEY", "s" * 32)
    monkeypatch.setenv("FNL_TEST_USER", "fnl")
    monkeypatch.setenv("FNL_TEST_PASSWORD", "hunter2-secret")
    path = tmp_path / "runtime.yaml"
    path.write_text(HEAD + "actions:\n  - smtp: {host: smtp.acme.example, port: 587, starttls: false, "
                    "user_env: FNL_TEST_USER, password_env: FNL_TEST_PASSWORD}\n", encoding="utf-8")
    compiled = compiled_for(ACME)
    db = Database(str(tmp_path / "a.db")).scope(compiled.plan.funnel, compiled.plan.sender.from_)
    try:
        with contextlib.ExitStack() as stack, pytest.raises(UsageError) as caught:
            rc.open_adapters(rc.load_config(path), compiled, db, stack)
    finally:
        db.close()
    assert caught.value.message.endswith("runtime.yaml:3:5: starttls: false would send the SMTP password to "
                                         "smtp.acme.example in the clear")
    assert "hunter2" not in caught.value.message + caught.value.help
