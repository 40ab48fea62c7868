"""fnl: B2B email funnels as code.

The command line only parses options, calls one pipeline stage and picks a reporter.
Exit codes: 0 clean, 1 problems found, 2 changes (`fnl plan --detailed-exitcode`),
3 usage error or unreadable path, 4 internal error.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from typing import List, Optional

import click

from engine import __version__
from engine.errors import EXIT_INTERNAL, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, FnlError, UsageError

FORMATS = ("text", "json", "github", "sarif")


def _default_format() -> str:
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fnl")
@click.option("--traceback", "show_traceback", is_flag=True, help="Show Python tracebacks of internal errors.")
@click.pass_context
def cli(ctx: click.Context, show_traceback: bool) -> None:
    """B2B email funnels as code: validate, compile, simulate and run funnel definitions."""
    ctx.obj = {"traceback": show_traceback}


def _codes(values: tuple) -> tuple:
    out = []
    for value in values:
        out.extend(v.strip().upper() for v in value.split(",") if v.strip())
    bad = [v for v in out if not v.startswith("FNL")]
    if bad:
        raise click.BadParameter(f"{bad[0]!r} is not a rule ID or prefix (such as FNL201 or FNL4)")
    return tuple(out)


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format (default: text; github when GITHUB_ACTIONS=true).")
@click.option("-v", "--verbose", is_flag=True, help="Also show the less relevant problems at each location.")
@click.option("--select", multiple=True, metavar="IDS", help="Run only these rules (IDs or prefixes, comma-separated).")
@click.option("--ignore", multiple=True, metavar="IDS", help="Skip these rules (IDs or prefixes, comma-separated).")
@click.option("--fail-on", type=click.Choice(("error", "warning", "info", "never")), default=None,
              help="Lowest severity that fails the run (default: error).")
@click.option("--no-lint", is_flag=True, help="Check YAML and schema only.")
@click.option("--baseline", "baseline_file", type=click.Path(dir_okay=False), default=None,
              help="Report only findings not in this baseline file.")
@click.option("--write-baseline", type=click.Path(dir_okay=False), default=None,
              help="Accept every current finding: write them to this file and exit 0.")
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
    from engine.lint.runner import Selection
    from engine.report import REPORTERS

    settings = config.find()
    selection = None if no_lint else Selection(_codes(select) or settings.select,
                                                _codes(ignore) or settings.ignore)
    results = check_paths(tuple(paths), selection)
    if write_baseline:
        count = baseline.write(Path(write_baseline), [(r.source.name, p) for r in results for p in r.problems])
        click.echo(f"Wrote {count} finding{'s' if count != 1 else ''} to {write_baseline}.")
        return EXIT_OK
    accepted_file = baseline_file or settings.baseline
    if accepted_file:
        results = without_baseline(results, baseline.read(Path(accepted_file)))
    out = REPORTERS[fmt or _default_format()](results, verbose)
    click.echo(out, nl=False)
    return EXIT_PROBLEMS if failing(results, fail_on or settings.fail_on) else EXIT_OK


@cli.command()
@click.argument("rule_id", required=False, metavar="[RULE]")
def rules(rule_id: Optional[str]) -> int:
    """List every lint rule, or print one rule's documentation.

    \b
    Examples:
      fnl rules
      fnl rules FNL301
    """
    from engine.lint.registry import BY_ID, RULES
    from engine.lint.runner import rule_meta

    if rule_id:
        rule = BY_ID.get(rule_id.upper())
        if rule is None:
            import difflib

            guess = difflib.get_close_matches(rule_id.upper(), list(BY_ID), n=1)
            raise UsageError(f"no rule {rule_id!r}", f"did you mean {guess[0]}?" if guess else "run `fnl rules` for the list")
        meta = rule_meta(rule)
        click.echo(f"{meta['id']} {meta['name']} ({meta['severity']})\n\n{meta['doc']}")
        return EXIT_OK
    for rule in RULES:
        meta = rule_meta(rule)
        click.echo(f"{meta['id']}  {meta['severity']:<8} {meta['name']:<26} {meta['summary']}")
    return EXIT_OK


@cli.command()
def schema() -> int:
    """Print the funnel definition JSON Schema."""
    from engine.validate import schema as load_schema

    click.echo(json.dumps(load_schema("funnel"), indent=2, ensure_ascii=False))
    return EXIT_OK


def run(argv: Optional[List[str]] = None) -> int:
    """Run the CLI and return its exit code; never lets a traceback reach the user."""
    show_traceback = "--traceback" in (argv if argv is not None else sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="fnl", standalone_mode=False)
        return rv if isinstance(rv, int) else EXIT_OK
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        exc.show()
        return EXIT_USAGE
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except KeyboardInterrupt:
        return 130
    except FnlError as exc:
        click.echo(f"fnl: error: {exc.message}", err=True)
        if exc.help:
            click.echo(f"  help: {exc.help}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if show_traceback:
            traceback.print_exc()
        click.echo(f"fnl: internal error: {type(exc).__name__}: {exc}", err=True)
        click.echo("  help: this is a bug in fnl; rerun with --traceback and report it", err=True)
        return EXIT_INTERNAL


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
