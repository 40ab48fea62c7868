"""fnl: B2B email funnels as code.

The command line only parses options, calls one pipeline stage and picks a reporter.
Exit codes are stated once, in `engine.errors.EXIT_MEANINGS`; `fnl --help` prints them.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, List, Optional, Tuple

import click
from click.shell_completion import CompletionItem

from engine import __version__
from engine.errors import (EXIT_CHANGES, EXIT_INTERNAL, EXIT_MEANINGS, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, FnlError,
                           ProblemsFound, UsageError)
from engine.terminal import COLOR_MODES, Style, escape, style_for

FORMATS = ("text", "json", "github", "sarif")


def _default_format() -> str:
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"


_COLOR = "fnl.color"


def _remember_color(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> None:
    if value is not None:
        ctx.meta[_COLOR] = value  # shared by the group's context and the command's


def _color_option() -> click.Option:
    """`--color WHEN`, accepted before the command (`fnl --color never validate ...`) and
    after it (`fnl validate --color never ...`); the later one wins."""
    return click.Option(["--color"], type=click.Choice(COLOR_MODES), default=None, expose_value=False,
                        callback=_remember_color, metavar="[auto|always|never]",
                        help="Colour the text output: auto (default: on a terminal, off when piped or "
                             "under NO_COLOR), always or never.")


# Examples for a command whose help has none of its own, shown after its options.
_EXAMPLES = {
    "trace": ("fnl trace funnels/acme --events tests/events/acme-dana.jsonl",
              "fnl trace funnels/acme --events tests/events/acme-dana.jsonl --format json"),
}


def _examples_epilog(lines: tuple) -> str:
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _exit_codes_epilog() -> str:
    return "\b\nExit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_MEANINGS)


def _style(err: bool = False) -> Style:
    """The colour style for standard output (or standard error) under --color."""
    ctx = click.get_current_context(silent=True)
    mode = ctx.meta.get(_COLOR, "auto") if ctx is not None else "auto"
    return style_for(mode, sys.stderr if err else sys.stdout, os.environ)


class FnlGroup(click.Group):
    """Maps fnl's errors to exit codes inside click, so `fnl` behaves the same from the
    console script, `run()` and click's test runner: usage errors exit 3 (not click's
    2), problems 1, internal errors 4 with no traceback unless --traceback is given."""

    def add_command(self, cmd: click.Command, name: Optional[str] = None) -> None:
        cmd.params.append(_color_option())  # every command takes --color
        examples = _EXAMPLES.get(name or cmd.name or "")
        if examples and "Examples:" not in (cmd.help or "") and not cmd.epilog:
            cmd.epilog = _examples_epilog(examples)
        super().add_command(cmd, name)

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = EXIT_USAGE
            exc.message = escape(exc.message)  # it may quote an argument
            raise

    def invoke(self, ctx: click.Context) -> None:
        try:
            rv = super().invoke(ctx)
        except click.UsageError as exc:
            exc.exit_code = EXIT_USAGE
            exc.message = escape(exc.message)
            raise
        except (click.exceptions.Exit, click.Abort):
            raise
        except ProblemsFound as exc:
            from engine.report.text import problem_block

            style = _style(err=True)
            for problem in exc.problems:
                click.echo("\n".join(problem_block(problem, False, style)), err=True, color=style.colour or None)
            if getattr(exc, "context", ""):
                click.echo(escape(exc.context), err=True, color=style.colour or None)
            ctx.exit(EXIT_PROBLEMS)
        except FnlError as exc:
            style = _style(err=True)
            click.echo(f"fnl: {style.paint('error', 'error:')} {escape(exc.message)}", err=True,
                       color=style.colour or None)
            if exc.help:
                click.echo(f"  {style.paint('help', 'help:')} {escape(exc.help)}", err=True, color=style.colour or None)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            ctx.exit(130)
        except BrokenPipeError:
            ctx.exit(EXIT_OK)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if ctx.params.get("show_traceback"):
                traceback.print_exc()
            click.echo(f"fnl: internal error: {type(exc).__name__}: {escape(exc)}", err=True)
            click.echo("  help: this is a bug in fnl; rerun with --traceback and report it", err=True)
            ctx.exit(EXIT_INTERNAL)
        ctx.exit(rv if isinstance(rv, int) else EXIT_OK)


@click.group(cls=FnlGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=_exit_codes_epilog())
@click.version_option(__version__, prog_name="fnl")
@click.option("--traceback", "show_traceback", is_flag=True, help="Show Python tracebacks of internal errors.")
@click.option("--color", type=click.Choice(COLOR_MODES), default=None, expose_value=False, callback=_remember_color,
              metavar="[auto|always|never]", help="Colour the text output (also accepted after the command).")
@click.pass_context
def cli(ctx: click.Context, show_traceback: bool) -> None:
    """B2B email funnels as code: validate, compile, simulate and run funnel definitions.

    Run `fnl COMMAND --help` for a command's options and examples.

    \b
    Examples:
      fnl validate funnels/
      fnl --color never validate funnels/ --select FNL4
      fnl compile funnels/acme -o plan.json
      fnl rules FNL301
    """
    ctx.obj = {"traceback": show_traceback}


def _codes(values: tuple) -> tuple:
    out = []
    for value in values:
        out.extend(v.strip().upper() for v in value.split(",") if v.strip())
    bad = [v for v in out if not v.startswith("FNL")]
    if bad:
        raise click.BadParameter(f"{bad[0]!r} is not a rule ID or prefix (such as FNL201 or FNL4)")
    return tuple(out)


def _rule_choices(groups: bool) -> List[Tuple[str, str]]:
    """(value, description) for completing rule IDs: each rule's ID and, with `groups`, each
    family prefix (FNL2 for every FNL2xx rule)."""
    from engine.lint.registry import RULES
    from engine.lint.runner import rule_meta

    metas = [rule_meta(rule) for rule in RULES]
    out: List[Tuple[str, str]] = []
    if groups:
        for family in sorted({m["id"][:4] for m in metas}):
            count = sum(1 for m in metas if m["id"].startswith(family))
            out.append((family, f"every {family}xx rule ({count})"))
    out.extend((m["id"], f"{m['name']}: {m['summary']}") for m in metas)
    return out


def complete_rule_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> List[CompletionItem]:
    """Shell completion for --select and --ignore: rule IDs and family prefixes, after the
    last comma of a comma-separated list (`FNL201,FNL4` completes the `FNL4`)."""
    head, comma, last = incomplete.rpartition(",")
    given = {v.strip().upper() for v in head.split(",")} if comma else set()
    want = last.strip().upper()
    return [CompletionItem(f"{head}{comma}{value}", help=help) for value, help in _rule_choices(True)
            if value.startswith(want) and value not in given]


def complete_rule(ctx: click.Context, param: click.Parameter, incomplete: str) -> List[CompletionItem]:
    """Shell completion for `fnl rules`: rule IDs (`FNL3` completes FNL301...), and rule
    names for lower-case text (`unknown-` completes unknown-template...)."""
    out = []
    for value, help in _rule_choices(False):
        name = help.split(":", 1)[0]
        if value.startswith(incomplete.upper()):
            out.append(CompletionItem(value, help=help))
        elif incomplete and incomplete.islower() and name.startswith(incomplete):
            out.append(CompletionItem(name, help=f"{value}: {help.split(': ', 1)[-1]}"))
    return out


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format (default: text; github when GITHUB_ACTIONS=true).")
@click.option("-v", "--verbose", is_flag=True, help="Also show the less relevant problems at each location.")
@click.option("--select", multiple=True, metavar="IDS", shell_complete=complete_rule_ids,
              help="Run only these rules (IDs or prefixes, comma-separated).")
@click.option("--ignore", multiple=True, metavar="IDS", shell_complete=complete_rule_ids,
              help="Skip these rules (IDs or prefixes, comma-separated).")
@click.option("--fail-on", type=click.Choice(("error", "warning", "info", "never")), default=None,
              help="Lowest severity that fails the run (default: error).")
@click.option("--no-lint", is_flag=True, help="Check YAML and schema only.")
@click.option("--baseline", "baseline_file", type=click.Path(dir_okay=False), default=None,
              help="Report only findings not in this baseline file.")
@click.option("--write-baseline", type=click.Path(dir_okay=False), default=None,
              help=f"Accept every current finding: write them to this file and exit {EXIT_OK} (no problems).")
def validate(paths: tuple, fmt: Optional[str], verbose: bool, select: tuple, ignore: tuple,
             fail_on: Optional[str], no_lint: bool, baseline_file: Optional[str],
             write_baseline: Optional[str]) -> int:
    """Check funnel definitions (files or directories): YAML, schema and lint rules.

    \b
    Examples:
      fnl validate funnels/
      fnl validate funnels/acme --format sarif > fnl.sarif
      fnl validate funnels/ --select FNL4 --fail-on warning
      fnl validate funnels/ --write-baseline fnl-baseline.json
    """
    from pathlib import Path

    from engine import baseline, config
    from engine.check import check_paths, failing, without_baseline
    from engine.lint.runner import Selection, check_codes
    from engine.report import REPORTERS

    settings = config.find()
    chosen, skipped = _codes(select), _codes(ignore)
    check_codes(chosen, "--select")
    check_codes(skipped, "--ignore")
    if settings.source:
        check_codes(settings.select, f"{settings.source}: select")
        check_codes(settings.ignore, f"{settings.source}: ignore")
    selection = None if no_lint else Selection(chosen or settings.select, skipped or settings.ignore)
    results = check_paths(tuple(paths), selection)
    if write_baseline:
        count = baseline.write(Path(write_baseline), [(r.source.name, p) for r in results for p in r.problems])
        click.echo(f"Wrote {count} finding{'s' if count != 1 else ''} to {escape(write_baseline)}.")
        return EXIT_OK
    accepted_file = baseline_file or settings.baseline
    if accepted_file:
        results = without_baseline(results, baseline.read(Path(accepted_file)), Path(accepted_file).parent)
    if (fmt or _default_format()) == "text":
        from engine.report import text as text_report

        style = _style()
        click.echo(text_report.render(results, verbose, style), nl=False, color=style.colour or None)
    else:
        click.echo(REPORTERS[fmt or _default_format()](results, verbose), nl=False)
    return EXIT_PROBLEMS if failing(results, fail_on or settings.fail_on) else EXIT_OK


@cli.command()
@click.argument("rule_id", required=False, metavar="[RULE|CODE]", shell_complete=complete_rule)
def rules(rule_id: Optional[str]) -> int:
    """List every lint rule, or print the page of one rule or code: what it means, an
    example that gets it, and the fix. Every code fnl prints has a page, found by its ID
    or its name.

    \b
    Examples:
      fnl rules
      fnl rules FNL301
      fnl rules FNL100
      fnl rules unknown-stage
    """
    from engine import docs
    from engine.lint.registry import RULES
    from engine.lint.runner import rule_meta

    if rule_id:
        return _print_page(rule_id)
    for rule in RULES:
        meta = rule_meta(rule)
        click.echo(f"{meta['id']}  {meta['severity']:<8} {meta['name']:<26} {meta['summary']}")
    # Standard output stays one rule a line; where to read on goes to standard error.
    click.echo("\nThe codes of files, the schema, events and plan files: fnl help codes. "
               "One code's page: fnl rules CODE.\nHelp topics: " + ", ".join(t.name for t in docs.TOPICS)
               + " (fnl help TOPIC).", err=True)
    return EXIT_OK


def _print_page(query: str) -> int:
    from engine import docs

    page = docs.lookup(query)
    if page is None:
        guess = docs.suggest(query)
        raise UsageError(f"no rule {query!r}", f"did you mean {guess}?" if guess else
                         "run `fnl rules` for the lint rules, `fnl help codes` for every code")
    click.echo(page)
    return EXIT_OK


@cli.command("help")
@click.argument("topic", required=False, metavar="[TOPIC]")
@click.pass_context
def help_cmd(ctx: click.Context, topic: Optional[str]) -> int:
    """Print a help topic (conditions, codes), a command's help, or a code's page.

    \b
    Examples:
      fnl help
      fnl help conditions
      fnl help validate
      fnl help FNL110
    """
    from engine import docs

    if not topic:
        click.echo(docs.topic_listing(), nl=False)
        return EXIT_OK
    text = docs.topic_text(topic.lower())
    if text is not None:
        click.echo(text, nl=False)
        return EXIT_OK
    command = cli.get_command(ctx, topic)
    if command is not None:
        with click.Context(command, info_name=topic, parent=ctx.parent) as sub:
            click.echo(command.get_help(sub))
        return EXIT_OK
    if docs.lookup(topic) is not None:
        return _print_page(topic)
    import difflib

    choices = [t.name for t in docs.TOPICS] + sorted(cli.list_commands(ctx))
    guess = difflib.get_close_matches(topic.lower(), choices, n=1, cutoff=0.6) or (
        [docs.suggest(topic)] if docs.suggest(topic) else [])
    raise UsageError(f"no help topic {topic!r}", f"did you mean {guess[0]}?" if guess else
                     f"topics: {', '.join(t.name for t in docs.TOPICS)}; or a command, or a code such as FNL100")


@cli.command()
@click.argument("name", type=click.Choice(("funnel", "section", "plan", "behavior", "expect", "event", "runtime")),
                default="funnel")
def schema(name: str) -> int:
    """Print a JSON Schema: the funnel definition (default), one section file of a split
    definition, the compiled plan, the behaviour model or the expectations that `fnl
    simulate` reads, an event as fnl trace, run and serve read them, or the runtime config
    of `fnl run --config`.

    \b
    Examples:
      fnl schema
      fnl schema section > section.schema.json
      fnl schema plan > plan.schema.json
      fnl schema behavior > behavior.schema.json
      fnl schema expect
      fnl schema runtime > runtime.schema.json
    """
    from engine.validate import schema as load_schema

    click.echo(json.dumps(load_schema(name), indent=2, ensure_ascii=False))
    return EXIT_OK


def _emit(text: str, output: Optional[str], sizes: bool = False) -> int:
    """Print a command's result, or write it to `-o FILE` and say so on standard error."""
    if not output:
        click.echo(text, nl=False)
        return EXIT_OK
    try:
        with open(output, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    except OSError as exc:
        raise UsageError(f"-o {output}: cannot write: {exc.strerror or exc}",
                         "write into a directory that exists and is writable") from None
    click.echo(f"Wrote {escape(output)}" + (f" ({len(text):,} bytes)." if sizes else "."), err=True)
    return EXIT_OK


@cli.command()
@click.argument("funnel", metavar="FUNNEL")
@click.argument("template", metavar="TEMPLATE", required=False)
@click.option("--lead", "lead_file", default=None, metavar="FILE",
              help="The lead: a JSON object of its profile attributes.")
@click.option("--persona", default=None, help="Render for a synthetic lead of this persona.")
@click.option("--segment", default=None, help="Render for a synthetic lead of this segment.")
@click.option("--variant", default=None, help="Only this A/B variant (default: every variant).")
@click.option("--all", "every", is_flag=True,
              help="Every email of the funnel, for each segment and persona: one HTML gallery (needs -o DIR).")
@click.option("-o", "--output", default=None, metavar="PATH",
              help="Where the HTML goes: a file (one email) or a directory (several, or --all). "
                   "Default: TEMPLATE.html in the working directory.")
def render(funnel: str, template: Optional[str], lead_file: Optional[str], persona: Optional[str],
           segment: Optional[str], variant: Optional[str], every: bool, output: Optional[str]) -> int:
    """Render an email as a lead will receive it: the subject and text part printed, the
    HTML part written to a file; every A/B variant. The same sandbox as sending.

    \b
    Examples:
      fnl render funnels/acme saas/case-study --persona executive
      fnl render funnels/acme saas/case-study --lead lead.json -o preview.html
      fnl render funnels/acme --all -o gallery/
    """
    from pathlib import Path

    from engine.authoring import render as rd
    from engine.pipeline import compiled_for

    if every:
        if template or lead_file or persona or segment or variant:
            raise UsageError("--all renders every email for every segment and persona",
                             "leave out TEMPLATE, --lead, --persona, --segment and --variant with --all")
        if not output:
            raise UsageError("--all needs -o DIR", "name a directory for the gallery, such as -o gallery/")
        c = compiled_for(funnel)
        page = rd.gallery(c.funnel, c.plan)
        try:
            Path(output).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"-o {output}: cannot make the directory: {exc.strerror or exc}",
                             "name a directory you can write to") from None
        return _emit(page, str(Path(output) / "index.html"), sizes=True)
    if not template:
        raise UsageError("name the TEMPLATE to render, or give --all -o DIR for every email",
                         "fnl render FUNNEL TEMPLATE [--persona P | --segment S | --lead FILE]")
    if lead_file and (persona or segment):
        raise UsageError("--lead gives the lead itself; --persona and --segment make one up",
                         "give either --lead FILE or --persona/--segment")
    c = compiled_for(funnel)
    profile = rd.lead_from_file(lead_file, c.plan) if lead_file else rd.synthetic_lead(c.funnel, c.plan, segment,
                                                                                       persona)
    emails = rd.preview(c.funnel, c.plan, template, profile, variant)
    note = rd.audience_note(c.plan, template, profile)
    if note:
        click.echo(f"note: {escape(note)}", err=True)
    from engine.terminal import escape_lines

    click.echo(escape_lines(rd.text_of(emails)))
    for path, text in rd.html_files(emails, output):
        _emit(text, str(path))
    return EXIT_OK


@cli.command()
@click.argument("directory", metavar="DIR")
@click.option("--name", default=None, help="The funnel's name (default: from DIR).")
@click.option("--from", "from_", default=None, metavar="URL@REV",
              help="The git repository and commit the hook and workflow install fnl from "
                   "(default: where this fnl was installed from).")
def init(directory: str, name: Optional[str], from_: Optional[str]) -> int:
    """Start a funnel repository: a starter funnel that validates, compiles and simulates,
    its templates, behaviour model and forecast gates, the schemas editors read, VS Code
    settings, a pre-commit hook and a GitHub Actions workflow.

    \b
    Examples:
      fnl init my-funnels
      fnl init my-funnels --name acme-b2b --from https://github.com/you/fnl.git@v0.1.0
    """
    from engine.authoring.init import init as scaffold

    written = scaffold(directory, name, from_)
    click.echo(f"Wrote {len(written)} files into {escape(directory)}. Next:\n"
               f"  cd {escape(directory)} && git init && pre-commit install\n"
               f"  fnl validate funnels/ && fnl simulate {escape(str(written[0].relative_to(directory)))}")
    return EXIT_OK


@cli.command()
@click.argument("paths", nargs=-1, metavar="[FUNNEL...]")
@click.option("--base", "base", required=True, metavar="REV", help="The git revision the change is against.")
@click.option("--leads", default=None, metavar="N", help="About this many leads a forecast (default: the model's).")
@click.option("--runs", default="5", metavar="R", help="Runs of each forecast, for 95 % intervals (default 5).")
def report(paths: tuple, base: str, leads: Optional[str], runs: str) -> int:
    """The pull-request comment (markdown): for each changed definition, the plan diff,
    the forecast beside the base's with intervals, and the funnel's Mermaid graph.

    \b
    Examples:
      fnl report --base origin/main > comment.md
      fnl report --base HEAD~1 funnels/reference.yaml --leads 500 --runs 3
    """
    from engine.authoring.report import pr_report
    from engine.simulate import parse_count

    with _ProgressBar() as bar:
        text = pr_report(base, paths, leads=parse_count(leads, "--leads") if leads is not None else None,
                         runs=parse_count(runs, "--runs"), progress=bar.update if bar.enabled else None)
    click.echo(text, nl=False)
    return EXIT_OK


@cli.command()
def lsp() -> int:
    """Run fnl's language server on standard input and output, for editors: every finding
    of `fnl validate` (strict YAML, schema, lint rules, templates) as a diagnostic while
    you type, with quick fixes where the fix is mechanical. Needs the lsp extra
    (docs/editors.md: installing it, and VS Code and Neovim).

    \b
    Examples:
      fnl lsp
    """
    try:
        from engine.authoring import lsp as server
    except ImportError as exc:
        raise UsageError(f"fnl lsp needs pygls: {exc}",
                         "install fnl with its lsp extra, fnl[lsp] (docs/editors.md says how)") from None
    server.serve()
    return EXIT_OK


@cli.command()
@click.argument("paths", nargs=-1, metavar="[PATH...]")
@click.option("--leads", default=None, metavar="N", help="Leads of the small forecast each save runs (default 200).")
@click.option("--no-forecast", is_flag=True, help="Check and compile only.")
@click.option("--once", is_flag=True, help="One check, compile and forecast, then exit: 1 if it found problems.")
def watch(paths: tuple, leads: Optional[str], no_forecast: bool, once: bool) -> int:
    """On every save: check every definition under PATH (default funnels/) as `fnl
    validate` does, compile it, forecast a small cohort, and print only what changed (new
    and fixed findings, figures that moved). Ctrl-C stops it.

    \b
    Examples:
      fnl watch
      fnl watch funnels/acme --leads 500
      fnl watch funnels/reference.yaml --once
    """
    from engine.authoring.watch import LEADS, Watch
    from engine.simulate import parse_count

    def out(line: str) -> None:
        click.echo(escape(line))

    w = Watch(list(paths) or ["funnels"], out, leads=parse_count(leads, "--leads") if leads else LEADS,
              forecast=not no_forecast)
    if once:
        w.cycle()
        return EXIT_PROBLEMS if w.errors else EXIT_OK
    try:
        w.run()
    except KeyboardInterrupt:
        pass
    return EXIT_OK


@cli.command("run")
@click.argument("funnel", metavar="FUNNEL")
@click.option("--db", "db_path", required=True, metavar="URL",
              help="The database: a SQLite file (made on first use), or postgresql://... for any number of workers "
                   "sharing one.")
@click.option("--events", "events_file", default=None, metavar="FILE",
              help="JSON Lines of events to add to the inbox (each is kept once), as fnl trace reads them; - for "
                   "standard input (on the wall clock, read as it comes). A bad line is refused on its own and said; "
                   "the others are applied, and fnl run exits 1 (problems found).")
@click.option("--until", default=None, metavar="TIME",
              help="Run the clock to this time and stop (the virtual clock: a quarter replays in seconds).")
@click.option("--clock", "clock", type=click.Choice(["virtual", "wall"]), default=None,
              help="virtual (with --until) or wall: run on the real time, sleeping until the next due step or a new "
                   "event, until stopped (Ctrl-C or SIGTERM); with --until, stop there.")
@click.option("--poll", type=click.FloatRange(0.05, 3600), default=5.0, show_default=True, metavar="SECONDS",
              help="On the wall clock: how often to look for new events in the inbox (fnl serve's).")
@click.option("--commit-every", "commit_every", type=click.IntRange(1, 100_000), default=500, show_default=True,
              metavar="EVENTS",
              help="On SQLite: events applied per transaction. 1 commits each event on its own (one short row of a "
                   "journal, folded into the tables as it goes); every commit is made before any delivery.")
@click.option("--rollback", is_flag=True,
              help="Deploy this definition's plan even though it ran on the database before and was replaced (else "
                   "refused, so a worker started with an older definition cannot undo a deploy).")
@click.option("--actions", "adapters", multiple=True, metavar="ADAPTER",
              help="Where actions go (repeatable): jsonl:FILE, jsonl:- for standard output (the default), "
                   "smtp://HOST:PORT for the emails, webhook:URL for handoffs, stage changes, SLA breaches, "
                   "escalations, CRM updates and notifications (signing key in FNL_SIGNING_KEY).")
@click.option("--config", "config_path", default=None, metavar="FILE",
              help="The runtime config (YAML, schemas/runtime.schema.json): adapters (SMTP with DKIM signing, "
                   "webhook, jsonl), per-domain sending limits and retention; secrets stay in the environment "
                   "variables it names. --actions adds to its adapters.")
def run_cmd(funnel: str, db_path: str, events_file: Optional[str], until: Optional[str], clock: Optional[str],
            poll: float, commit_every: int, rollback: bool, adapters: tuple, config_path: Optional[str] = None) -> int:
    """Run the funnel for real on a database: store the events (each once), apply them and
    the clock through the engine up to --until (or on the wall clock until stopped),
    durably, and deliver every action (each at least once, with its idempotency key). Run
    again with more events and a later --until to go on; nothing already applied is
    applied twice. A funnel whose plan differs from the one the database runs is deployed
    to its leads in flight first (fnl plan --db shows what that does).

    \b
    Examples:
      fnl run funnels/acme --db acme.db --events tests/events/acme-dana.jsonl --until 2026-06-01T00:00:00Z
    """
    from engine.runtime.run import Request, run

    refused = run(Request(funnel, db_path, events_file, until, clock, poll, tuple(adapters), config_path,
                          commit_every, rollback),
                  say=lambda line: click.echo(line, err=True), out=click.echo)
    return EXIT_PROBLEMS if refused else EXIT_OK


@cli.command()
@click.argument("funnel", metavar="FUNNEL")
@click.option("--db", "db_path", required=True, metavar="URL",
              help="The database fnl run keeps: a SQLite file (made on first use), or postgresql://...")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on (loopback by default).")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535),
              help="The port to listen on (0: any free one, said on standard error).")
def serve(funnel: str, db_path: str, host: str, port: int) -> int:
    """Take events over HTTP into the database's inbox, where fnl run applies them:
    POST /events (fnl's events, signed with FNL_SIGNING_KEY as the webhook adapter signs),
    GET and POST /unsubscribe (the one-click links of fnl's emails), GET and POST /confirm
    (the double opt-in links, on sender.confirm_url), POST /webhooks/sendgrid
    (SendGrid's signed Event Webhook, key in FNL_SENDGRID_PUBLIC_KEY) and POST /webhooks/ses
    (Amazon SES events through SNS). It answers 2xx only once the events are stored, and
    503 when the database cannot take them, so the sender sends again. Ctrl-C stops it.
    Needs the serve extra.

    \b
    Signing a POST /events request (else 401):
      X-Fnl-Timestamp: the time in unix seconds, within 300 s of the server's clock
      X-Fnl-Signature: the hex HMAC-SHA256 of timestamp + "." + body, keyed with
                       FNL_SIGNING_KEY (the key fnl serve runs with)
      ts=$(date +%s)
      sig=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$FNL_SIGNING_KEY" -hex | sed 's/^.* //')
      curl http://127.0.0.1:8025/events -H "X-Fnl-Timestamp: $ts" -H "X-Fnl-Signature: $sig" --data-binary "$body"

    \b
    Examples:
      fnl serve funnels/acme --db acme.db
      fnl serve funnels/acme --db acme.db --port 8080
    """
    try:
        from engine.runtime.serve import main as serve_main
    except ImportError as exc:
        raise UsageError(f'fnl serve needs its extra ({exc.name or "a package"} is missing): pip install "fnl[serve]"'
                         ) from None
    try:
        serve_main(funnel, db_path, host, port)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


# The --db of the commands that read the database fnl run keeps.
_kept_db = click.option("--db", "db_path", required=True, metavar="URL",
                        help="The database fnl run keeps: its SQLite file, or its postgresql://... URL.")


@cli.command()
@click.argument("funnel", metavar="FUNNEL")
@_kept_db
def status(funnel: str, db_path: str) -> int:
    """What the runtime's database holds: leads per stage and sequence, steps due next,
    deliveries not done, and each owner's leads with those past their SLA.

    \b
    Examples:
      fnl status funnels/acme --db acme.db
    """
    from engine.pipeline import plan_for
    from engine.runtime.inspect import status as report_status

    plan = plan_for(funnel)
    with _database(db_path) as db:
        click.echo(escape_lines_text(report_status(db.scope(plan.funnel, plan.sender.from_), plan, funnel)),
                   nl=False)
    return EXIT_OK


@cli.command()
@click.argument("lead", metavar="LEAD")
@_kept_db
def explain(lead: str, db_path: str) -> int:
    """One lead's history in the runtime's database, step by step in the words of fnl
    trace, and where it is now.

    \b
    Examples:
      fnl explain dana@loopwise.example --db acme.db
    """
    with _database(db_path) as db:
        text = __import__("engine.runtime.inspect", fromlist=["explain_all"]).explain_all(db, lead)
        shown = db.path
    if not text:
        raise UsageError(f"{lead}: no such lead in {shown}",
                         "give the lead's ID (its email address) as fnl run got it")
    click.echo(escape_lines_text(text), nl=False)
    return EXIT_OK


def escape_lines_text(text: str) -> str:
    from engine.terminal import escape_lines

    return escape_lines(text)


class _database:
    """An existing runtime database, opened and closed (not made: a typo is an error)."""

    def __init__(self, path: str) -> None:
        from pathlib import Path

        from engine.runtime.db import Database, is_postgres

        # A PostgreSQL URL is opened as given (a server that cannot be reached is one line
        # from Database); a SQLite file must exist.
        file = path[len("sqlite:///"):] if path.startswith("sqlite:///") else path
        if not is_postgres(path) and not Path(file).is_file():
            raise UsageError(f"--db {path}: no such database",
                             "give the SQLite file fnl run --db made, or its postgresql://... URL")
        self.db = Database(path)

    def __enter__(self) -> Any:
        return self.db

    def __exit__(self, *_: Any) -> None:
        self.db.close()


@cli.command()
@click.argument("lead", metavar="LEAD")
@_kept_db
def export(lead: str, db_path: str) -> int:
    """Print, as JSON, all that the runtime's database holds about a lead: in each funnel
    its state, its events and the actions decided for it, and which senders' suppression
    lists hold its address.

    \b
    Examples:
      fnl export dana@loopwise.example --db acme.db
    """
    import json as _json

    from engine.terminal import json_text

    with _database(db_path) as db:
        doc = db.export(lead)
        shown = db.path
    if not doc["funnels"] and not doc["suppressed"]:
        raise UsageError(f"{lead}: no such lead in {shown}", "give the lead's ID (its email address)")
    click.echo(json_text(_json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)))
    return EXIT_OK


@cli.command()
@click.argument("lead", metavar="LEAD")
@_kept_db
def forget(lead: str, db_path: str) -> int:
    """Erase a lead's data from the runtime's database (its state, events and actions, in
    every funnel), keeping only a hash of its address on the suppression list of every
    sender, so it gets no email again.

    \b
    Examples:
      fnl forget dana@loopwise.example --db acme.db
    """
    import time as _time

    with _database(db_path) as db:
        gone = db.forget(lead, int(_time.time() // 60))
    click.echo(f"Forgot {escape(lead)}: {gone:,} rows erased; its address's hash stays on the suppression list.",
               err=True)
    return EXIT_OK


@cli.command("compile")
@click.argument("funnel", metavar="FUNNEL")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the plan here instead of standard output.")
def compile_cmd(funnel: str, output: Optional[str]) -> int:
    """Compile a definition into its executable plan (versioned JSON).

    \b
    Examples:
      fnl compile funnels/acme -o plan.json
      fnl compile funnels/reference.yaml | jq .content_hash
    """
    from engine import plan as plan_mod
    from engine.pipeline import plan_for

    return _emit(plan_mod.dumps(plan_for(funnel)), output, sizes=True)


@cli.command()
@click.argument("funnel", metavar="FUNNEL")
@click.option("--events", "events_file", required=True, type=click.Path(dir_okay=False),
              help="JSON Lines file of events, one object per line.")
@click.option("--until", default=None, metavar="TIME",
              help="Run the clock until this ISO time; events after it are left out, and the trace "
                   "says how many (default: 120 days after the last event).")
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", help="Output format.")
def trace(funnel: str, events_file: str, until: Optional[str], fmt: str) -> int:
    """Run a lead's events through the engine and print its timeline.

    Each line of the events file is one event:

    \b
      {"type": "optin", "at": "2026-03-02T09:30:00Z", "lead": "dana@loopwise.example",
       "magnet": "roi-calculator", "profile": {"industry": "saas", "employees": 120}}
      {"type": "email.opened", "at": "2026-03-03T10:00:00Z", "lead": "dana@loopwise.example",
       "template": "saas/industry-insight"}
      {"type": "site.visited", "at": "...", "lead": "...", "page": "pricing"}
      {"type": "crm.demo_booked", "at": "...", "lead": "..."}

    \b
    Event types: optin, lead.imported (with "entry"), email.delivered|opened|clicked|
    replied|bounced|unsubscribed|complained, site.visited, magnet.downloaded,
    webinar.registered|attended (with "webinar", its name), profile.updated,
    crm.<event>, clock (the clock reaching "at" for the lead; "tick" is read as clock).
    Opens and clicks may carry "machine": true; bounces "bounce": "hard" or "soft".
    Other fields (ESP exports carry many) are ignored, and named once on stderr.
    Lines need not be in time order: the engine applies them by minute, then lead, then
    timestamp.
    """
    from pathlib import Path

    from engine import trace as tr
    from engine.errors import ProblemsFound
    from engine.pipeline import plan_for
    from engine.sources import display_path
    from engine.state import parse_time

    plan = plan_for(funnel)
    path = Path(events_file)
    if not path.exists():
        raise UsageError(f"{events_file}: no such file", "give the JSON Lines file of events with --events")
    display = display_path(path)
    scan = tr.scan_events(path, display)
    if scan.ignored:  # ESP exports carry fields fnl does not read: said once, not per line
        from engine.terminal import escape

        click.echo(escape(scan.ignored_note()), err=True)
    if scan.problems:
        raise ProblemsFound(scan.problems)
    try:
        horizon = parse_time(until) if until else None
    except ValueError as exc:
        raise UsageError(f"--until: {exc}") from None
    if horizon is not None and scan.first_at is not None and horizon < scan.first_at:
        raise UsageError(f"--until {until} is before the first event", "give a time after the events to follow")
    # Streamed: each step is printed as it happens, so a million events need no more
    # memory than their leads.
    rejected = []  # the first MAX_PROBLEMS, then a count: a hostile file cannot grow it
    more = 0
    render = tr.text_lines if fmt == "text" else tr.json_lines
    batch: list = []
    wrote = False
    for item in tr.run_file(plan, path, scan, horizon):
        problem = tr.rejection(item, display)
        if problem is not None:
            if len(rejected) < tr.MAX_PROBLEMS:
                rejected.append(problem)
            else:
                more += 1
        batch.extend(render((item,)))
        if len(batch) >= 1000:
            click.echo("\n".join(batch))
            batch, wrote = [], True
    if batch or (not wrote and fmt == "text"):
        click.echo("\n".join(batch))
    if rejected:
        from engine.report.text import problem_block

        for problem in rejected:
            click.echo("\n".join(problem_block(problem, False)), err=True)
        if more:
            from engine.terminal import escape

            click.echo(f"{escape(display)}: {more:,} more events were rejected; fix the ones above first", err=True)
        return EXIT_PROBLEMS
    return EXIT_OK


@cli.command()
@click.argument("funnel", metavar="FUNNEL")
@click.option("--format", "fmt", type=click.Choice(("mermaid", "dot")), default="mermaid",
              help="mermaid (renders in GitHub comments) or dot (Graphviz).")
def graph(funnel: str, fmt: str) -> int:
    """Draw the funnel: stages, transitions, sequences per segment, handoff.

    \b
    Examples:
      fnl graph funnels/acme > funnel.mmd
      fnl graph funnels/acme --format dot | dot -Tsvg > funnel.svg
    """
    from engine import graph as g
    from engine.pipeline import plan_for

    from engine.terminal import escape_lines

    plan = plan_for(funnel)
    # Labels come from the definition: no control character reaches the terminal raw.
    click.echo(escape_lines(g.mermaid(plan) if fmt == "mermaid" else g.dot(plan)), nl=False)
    return EXIT_OK


@cli.command("plan")
@click.argument("paths", nargs=-1, metavar="[OLD NEW | FUNNEL...]")
@click.option("--base", "base", default=None, metavar="REV",
              help="Compare the working tree with this git revision.")
@click.option("--format", "fmt", type=click.Choice(("text", "markdown", "json")), default="text",
              help="text, markdown (for a PR comment) or json.")
@click.option("--detailed-exitcode", is_flag=True,
              help=f"Exit {EXIT_CHANGES} when the plan changes, {EXIT_OK} when nothing changed; problems still exit "
                   f"{EXIT_PROBLEMS}, usage errors {EXIT_USAGE}.")
@click.option("--forecast", is_flag=True,
              help="Also simulate old and new with the new behaviour model and the same seeds, and show the "
                   "difference of the headline figures.")
@click.option("--leads", "forecast_leads", default=None, metavar="N", help="With --forecast: about this many leads.")
@click.option("--runs", "forecast_runs", default=None, metavar="R",
              help="With --forecast: runs, for 95 % intervals of the difference (default 1).")
@click.option("--db", "db_path", default=None, metavar="URL",
              help="Compare NEW with the plan the database of fnl run runs, and count what it does to the real "
                   "leads in flight, step by step; nothing is written. A plan they refuse is a problem: exit 1 "
                   "for the problems found.")
def plan_cmd(paths: tuple, base: Optional[str], fmt: str, detailed_exitcode: bool, forecast: bool,
             forecast_leads: Optional[str], forecast_runs: Optional[str], db_path: Optional[str]) -> int:
    """Show what a change does to the compiled funnel, and to leads in flight: each
    change in the definition's own words and units, at the line it is on. With --db,
    the old plan is the one a database runs, and its leads are counted.

    \b
    Examples:
      fnl plan --base HEAD~1 funnels/acme
      fnl plan --base HEAD~1 --format markdown > plan.md
      fnl plan old-plan.json funnels/acme
      fnl plan tests/samples/plan-newsletter-before.yaml tests/samples/plan-newsletter-after.yaml
      fnl plan --base origin/main funnels/acme --forecast --leads 1000 --runs 5
      fnl plan --db acme.db funnels/acme
    """
    from engine import diff as d
    from engine.planning import plans_against_base, plans_between

    deployment = None
    if db_path is not None:
        from engine.runtime.deploy import against_db

        if base is not None or len(paths) != 1:
            raise UsageError("with --db, give only NEW (a definition or plan JSON file)",
                             "for example: fnl plan --db acme.db funnels/acme")
        with _database(db_path) as db:
            old_side, new_side, deployment = against_db(db, paths[0])
            db_path = db.path  # shown without a password
        pairs = [(old_side, new_side)]
    elif base is not None:
        pairs = plans_against_base(base, tuple(paths) or ("funnels",))
    else:
        if len(paths) != 2:
            raise UsageError("give OLD and NEW (definitions or plan JSON files), or --base REV",
                             "for example: fnl plan --base origin/main funnels/acme")
        pairs = [plans_between(paths[0], paths[1])]
    diffs = [d.diff(old, new) for old, new in pairs]
    forecasts = _plan_forecasts(pairs, forecast, forecast_leads, forecast_runs, None if base else paths[-1])
    if fmt == "json":
        import json as _json

        from engine.terminal import for_json, json_text

        doc = {"format_version": d.FORMAT_VERSION, "plans": [d.to_json(x) for x in diffs]}
        if forecasts is not None:
            from engine.simulate.compare import data as forecast_data

            for entry, delta in zip(doc["plans"], forecasts):
                entry["forecast"] = forecast_data(delta) if delta is not None else None
        if deployment is not None:
            from engine.runtime.deploy import to_json as deployment_json

            doc["plans"][0]["deployment"] = deployment_json(deployment)
        click.echo(json_text(_json.dumps(for_json(doc), indent=2, ensure_ascii=False)))
    else:
        render = d.render_text if fmt == "text" else d.render_markdown
        from engine.simulate.compare import plan_section

        ends = [""] * len(diffs) if forecasts is None else [plan_section(c, fmt) for c in forecasts]
        if deployment is not None:
            from engine.runtime import deploy as dep

            rendered = (dep.render_text if fmt == "text" else dep.render_markdown)(deployment, db_path or "")
            ends = ["\n" + rendered + ends[0]]
        click.echo(("\n" if fmt == "text" else "\n---\n\n").join(render(x) + e for x, e in zip(diffs, ends)),
                   nl=False)
    if deployment is not None and not deployment.deployable:
        return EXIT_PROBLEMS
    if detailed_exitcode and any(x.changed for x in diffs):
        return EXIT_CHANGES
    return EXIT_OK


def _plan_forecasts(pairs: Any, forecast: bool, leads: Optional[str], runs: Optional[str],
                    new_path: Optional[str]) -> Optional[list]:
    """`fnl plan --forecast`: NEW minus OLD for each pair, or None without the flag."""
    if not forecast:
        if leads is not None or runs is not None:
            raise UsageError("--leads and --runs go with --forecast", "add --forecast to simulate old and new")
        return None
    from engine.simulate import parse_count
    from engine.simulate.compare import for_plans

    with _ProgressBar() as bar:
        return for_plans(pairs, leads=parse_count(leads, "--leads") if leads is not None else None,
                         runs=parse_count(runs, "--runs") if runs is not None else 1,
                         new_path=new_path, progress=bar.update if bar.enabled else None)


@cli.command()
@click.argument("funnel", metavar="FUNNEL")
@click.option("--behavior", "behavior_file", default=None, metavar="FILE",
              help="The behaviour model (default: the *.behavior.yaml beside the funnel, else fnl's assumptions).")
@click.option("--compare", "compare_with", default=None, metavar="OTHER",
              help="Forecast FUNNEL minus OTHER (a definition): same behaviour model, same seeds.")
@click.option("--base", "base", default=None, metavar="REV",
              help="Forecast FUNNEL minus the same funnel at this git revision.")
@click.option("--sensitivity", is_flag=True,
              help="Move each behaviour rate -20 % and +20 % and show how the MQL, SQL and customer figures move.")
@click.option("--sweep", "sweep_spec", default=None, metavar="PATH=LO..HI/N",
              help="Forecast at N values of one behaviour-file setting (dotted path, such as "
                   "email.default.open=0.2..0.4/5, or PATH=A,B,C): one row per value, same seeds.")
@click.option("--leads", default=None, metavar="N", help="About this many leads (default: the behaviour model's).")
@click.option("--days", default=None, metavar="D", help="Horizon in days, 1 to 3650 (default: the model's).")
@click.option("--seed", default="1", metavar="S", help="Seed of the random draws (default 1).")
@click.option("--runs", default="1", metavar="R",
              help="Repeat with seeds S, S+1, ... and report means with 95 % intervals (default 1).")
@click.option("--start", default=None, metavar="TIME",
              help="When the simulation starts (default: 2026-01-05T00:00:00Z, a Monday).")
@click.option("--format", "fmt", type=click.Choice(("text", "json", "markdown", "html")), default="text",
              help="text, json (versioned, for machines), markdown (for a PR comment) or html (one page "
                   "with charts that opens offline).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the report here instead of standard output.")
@click.option("--expect", "expect_file", default=None, metavar="FILE",
              help="Expectations to judge, CI gates, instead of the definition's `expect:` block and the "
                   "*.expect.yaml beside the funnel (by default both are judged, if any); "
                   f"a failed one is a problem found: exit {EXIT_PROBLEMS}.")
@click.option("--strict", is_flag=True, help="An expectation holds only if its whole 95 % interval does.")
@click.option("--workers", default="1", metavar="N",
              help="Simulate the leads on N local processes (default 1); the forecast is the same.")
@click.option("--dask", "dask_address", default=None, metavar="ADDRESS",
              help="Simulate the leads on the Dask cluster whose scheduler is at ADDRESS (the dask extra); "
                   "the forecast is the same.")
@click.option("--engine", "engine", type=click.Choice(("auto", "vector", "per-lead")), default="auto",
              help="How leads are simulated: as NumPy columns (vector: every funnel but one with an entry, "
                   "a score window or a days_since condition), one by one through the engine (per-lead), or "
                   "columns where the funnel allows (auto, the default). The forecast is the same.")
def simulate(funnel: str, compare_with: Optional[str], base: Optional[str], sensitivity: bool,
             behavior_file: Optional[str], leads: Optional[str], days: Optional[str], seed: str,
             runs: str, start: Optional[str], fmt: str, output: Optional[str], expect_file: Optional[str] = None,
             strict: bool = False, workers: str = "1", dask_address: Optional[str] = None,
             sweep_spec: Optional[str] = None, engine: str = "auto") -> int:
    """Forecast a funnel: run synthetic leads through the engine and report leads per
    stage, conversion, time to MQL and SQL, emails per lead, A/B variants, weekly volumes
    and the load on each sales rep.

    \b
    Examples:
      fnl simulate funnels/reference.yaml --leads 200
      fnl simulate funnels/reference.yaml --leads 200 --days 60 --format json
      fnl simulate funnels/newsletter-to-demo.yaml --leads 100 --runs 3
      fnl simulate funnels/acme --format markdown -o forecast.md
      fnl simulate funnels/acme --base HEAD~1 --leads 500 --runs 3
      fnl simulate funnels/reference.yaml --leads 300 --sensitivity
      fnl simulate funnels/reference.yaml --leads 300 --sweep 'visits.daily=0.005..0.02/4'
      fnl simulate funnels/acme --leads 200 --runs 3 --strict
      fnl simulate funnels/reference.yaml --leads 1000000 --workers 2
      fnl simulate funnels/acme --engine per-lead --leads 500
      fnl simulate funnels/acme --leads 20000 --dask tcp://127.0.0.1:8786
    """
    from engine.simulate import Workers, check_sizes, forecast, parse_count
    from engine.simulate.expect import problems as failed_expectations
    from engine.simulate.report import render

    sizes = (parse_count(leads, "--leads") if leads is not None else None,
             parse_count(days, "--days") if days is not None else None, parse_count(runs, "--runs"))
    check_sizes(*sizes)
    where = Workers(parse_count(workers, "--workers"), dask_address, engine=engine)
    if compare_with is not None or base is not None or sensitivity or sweep_spec is not None:
        if expect_file is not None or strict:
            given = "--expect" if expect_file is not None else "--strict"
            raise UsageError(f"{given} judges one forecast, not a comparison, sensitivity table or sweep",
                             "run fnl simulate FUNNEL with the expectations on their own")
        return _simulate_delta(funnel, behavior_file, sizes, parse_count(seed, "--seed"), start, fmt, output,
                               compare_with, base, sensitivity, where, sweep_spec)
    with _ProgressBar() as bar:
        result = forecast(funnel, behavior_file, leads=sizes[0], days=sizes[1], seed=parse_count(seed, "--seed"),
                          runs=sizes[2], start=start, progress=bar.update if bar.enabled else None,
                          expect_path=expect_file, strict=strict, workers=where)
    _emit(render(result, fmt), output)
    if result.expectations is not None and result.expectations.failed:
        raise ProblemsFound(failed_expectations(result.expectations))  # after the report, one line each
    return EXIT_OK


def _simulate_delta(funnel: str, behavior_file: Optional[str], sizes: tuple, seed: int, start: Optional[str],
                    fmt: str, output: Optional[str], other: Optional[str], base: Optional[str],
                    sensitivity: bool, workers: Any, sweep: Optional[str] = None) -> int:
    """`fnl simulate --compare OTHER`, `--base REV`, `--sensitivity` and `--sweep`."""
    if sum((other is not None, base is not None, sensitivity, sweep is not None)) > 1:
        raise UsageError("give one of --compare, --base, --sensitivity and --sweep", "run fnl simulate once for each")
    if fmt not in ("text", "json", "markdown"):
        raise UsageError(f"--format {fmt} is not available with --compare, --base, --sensitivity or --sweep",
                         "give --format text, json or markdown")
    from engine.simulate import compare as c, sensitivity as s, sweep as w

    options = dict(leads=sizes[0], days=sizes[1], seed=seed, runs=sizes[2], start=start, workers=workers)
    with _ProgressBar() as bar:
        progress = bar.update if bar.enabled else None
        if sweep is not None:
            text = w.render(w.sweep(funnel, sweep, behavior_file, progress=progress, **options), fmt)
        elif sensitivity:
            text = s.render(s.sensitivity(funnel, behavior_file, progress=progress, **options), fmt)
        else:
            text = c.render(c.compare(funnel, other, base, behavior_file, progress=progress, **options), fmt)
    return _emit(text, output)


class _ProgressBar:
    """`fnl simulate`'s progress: click's bar on standard error, only on a terminal outside
    CI, and only once the simulation has taken over a second; closed before the report."""

    def __init__(self) -> None:
        import time

        self.enabled = sys.stderr.isatty() and not os.environ.get("CI") and os.environ.get("GITHUB_ACTIONS") != "true"
        self.began = time.monotonic()
        self.bar: Optional[object] = None
        self.seen = 0

    def update(self, run: int, runs: int, steps: int) -> None:
        import time

        if self.bar is None:
            if time.monotonic() - self.began < 1.0:
                return
            # How many engine steps a run takes is not known beforehand: a bar without a length.
            unknown = (step for step in ())
            self.bar = click.progressbar(unknown, label="Simulating", file=sys.stderr, show_pos=True,
                                         item_show_func=lambda _: "engine steps")
            self.bar.__enter__()  # type: ignore[attr-defined]
        bar: Any = self.bar
        bar.label = f"Simulating, run {run + 1} of {runs}" if runs > 1 else "Simulating"
        bar.update(max(0, steps - self.seen) if steps >= self.seen else steps)
        self.seen = steps

    def __enter__(self) -> "_ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)  # type: ignore[attr-defined]


def run(argv: Optional[List[str]] = None) -> int:
    """Run the CLI and return its exit code; never lets a traceback reach the user."""
    try:
        rv = cli.main(args=argv, prog_name="fnl", standalone_mode=False)
    except click.UsageError as exc:
        exc.show()
        return EXIT_USAGE
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except KeyboardInterrupt:
        return 130
    return rv if isinstance(rv, int) else EXIT_OK


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
