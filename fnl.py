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
from engine.errors import EXIT_INTERNAL, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, FnlError

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


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format (default: text; github when GITHUB_ACTIONS=true).")
@click.option("-v", "--verbose", is_flag=True, help="Also show the less relevant problems at each location.")
def validate(paths: tuple, fmt: Optional[str], verbose: bool) -> int:
    """Check funnel definitions (files or directories) against the schema.

    \b
    Examples:
      fnl validate funnels/
      fnl validate funnels/acme --format sarif > fnl.sarif
    """
    from engine.check import check_paths
    from engine.report import REPORTERS

    results = check_paths(tuple(paths))
    out = REPORTERS[fmt or _default_format()](results, verbose)
    click.echo(out, nl=False)
    return EXIT_PROBLEMS if any(r.problems for r in results) else EXIT_OK


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
