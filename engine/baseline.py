"""Baselines: accept today's findings and fail only on new ones.

A finding is keyed by definition, rule ID, JSON path and message (never by line
number), so edits elsewhere in a file do not disturb it. Keys are counted, so a second
finding of the same rule at the same path is new.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

from .errors import Problem, UsageError

FORMAT_VERSION = 1
Key = Tuple[str, str, str, str]


_PLACES = re.compile(r"\b(line \d+|[\w./-]+:\d+)")


def _relative(path: str, anchor: Optional[Path]) -> str:
    """A path as seen from the baseline file's folder, so the baseline matches whichever
    directory fnl runs from (a developer's shell, CI, pre-commit)."""
    if anchor is None:
        return path
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(anchor))).as_posix()


def key(definition: str, p: Problem, anchor: Optional[Path] = None) -> Key:
    """Rule, JSON path (or the file, for a template) and the message with any line
    numbers in it masked: stable across edits elsewhere, but two different findings of
    one rule at one path (two unsent templates) stay two."""
    where = p.dotted_path if p.path else _relative(p.location.file, anchor)
    return (_relative(definition, anchor), p.code, where, _PLACES.sub("…", p.message))


def write(path: Path, findings: Iterable[Tuple[str, Problem]]) -> int:
    # One entry per finding (repeats kept), so counts survive the round trip.
    keys = sorted(key(d, p, path.parent) for d, p in findings)
    entries = [{"definition": k[0], "code": k[1], "path": k[2], "message": k[3]} for k in keys]
    doc = {"format_version": FORMAT_VERSION, "findings": entries}
    try:
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the baseline: {exc.strerror or exc}",
                         "write it into a directory that exists and is writable") from None
    return len(entries)


def read(path: Path) -> Counter:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: baseline file does not exist", "create it with --write-baseline") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable fnl baseline ({exc})", "recreate it with --write-baseline") from None
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION or not isinstance(doc.get("findings"), list):
        raise UsageError(f"{path}: not an fnl baseline (format_version {FORMAT_VERSION})",
                         "recreate it with --write-baseline")
    counts: Counter = Counter()
    for entry in doc["findings"]:
        fields = ("definition", "code", "path", "message")
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in fields):
            raise UsageError(f"{path}: malformed baseline entry {str(entry)[:80]}", "recreate it with --write-baseline")
        counts[tuple(entry[k] for k in fields)] += 1
    return counts


def new_only(findings: List[Tuple[str, Problem]], accepted: Counter,
             anchor: Optional[Path] = None) -> List[Tuple[str, Problem]]:
    """The findings not covered by the baseline."""
    left = Counter(accepted)
    out = []
    for d, p in findings:
        k = key(d, p, anchor)
        if left[k] > 0:
            left[k] -= 1
        else:
            out.append((d, p))
    return out
