"""Lint settings from `fnl.toml` or `[tool.fnl]` in `pyproject.toml`.

The nearest directory (from the working directory up) that has either file wins; in
one directory `fnl.toml` comes first. Command-line options override file settings.

    [tool.fnl]
    select = ["FNL2", "FNL3", "FNL401"]
    ignore = ["FNL212"]
    fail-on = "warning"
    baseline = "fnl-baseline.json"
"""
from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .errors import UsageError

FAIL_ON = ("error", "warning", "info", "never")
KEYS = ("select", "ignore", "fail-on", "baseline")


@dataclass(frozen=True)
class Settings:
    select: Tuple[str, ...] = ()
    ignore: Tuple[str, ...] = ()
    fail_on: str = "error"
    baseline: Optional[str] = None
    source: Optional[str] = None  # the file these came from


def _table(path: Path) -> Optional[Dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read settings: {exc}", "check the file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}", "fix the TOML syntax") from None
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("fnl")
        return table if isinstance(table, dict) else None
    return data


def _codes(value: Any, key: str, path: Path) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.startswith("FNL") for v in value):
        raise UsageError(f"{path}: `{key}` must be a list of rule IDs or prefixes such as \"FNL4\"",
                         f'write {key} = ["FNL201", "FNL4"]')
    return tuple(value)


def parse(table: Dict[str, Any], path: Path) -> Settings:
    for key in table:
        if key.replace("_", "-") not in KEYS:
            guess = difflib.get_close_matches(key, KEYS, n=1)
            raise UsageError(f"{path}: unknown fnl setting `{key}`",
                             f"did you mean `{guess[0]}`?" if guess else f"settings are: {', '.join(KEYS)}")
    fail_on = table.get("fail-on", table.get("fail_on", "error"))
    if fail_on not in FAIL_ON:
        raise UsageError(f"{path}: `fail-on` must be one of {', '.join(FAIL_ON)}, not {fail_on!r}",
                         'write fail-on = "warning"')
    baseline = table.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        raise UsageError(f"{path}: `baseline` must be a file path", 'write baseline = "fnl-baseline.json"')
    if baseline:
        baseline = str((path.parent / baseline))
    return Settings(_codes(table.get("select", []), "select", path), _codes(table.get("ignore", []), "ignore", path),
                    fail_on, baseline, str(path))


def find(start: Optional[Path] = None) -> Settings:
    """Settings from the nearest fnl.toml / pyproject.toml [tool.fnl], or defaults."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for name in ("fnl.toml", "pyproject.toml"):
            candidate = folder / name
            if candidate.is_file():
                table = _table(candidate)
                if table is not None:
                    return parse(table, candidate)
    return Settings()
