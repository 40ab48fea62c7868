"""Which files make up which definitions, and merging a directory into one document.

A path on the command line is either a YAML file (one definition) or a directory. A
directory that holds `funnel.yaml` is one definition split across every YAML file
beneath it; any other directory is searched for definitions (files and such
directories). A definition split across files merges section by section: each file may
add entries to `sequences`, `segments`, `profile` and the other named sections, and
defining the same entry, or the same top-level value, in two files is a problem that
names both places.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .errors import JsonPath, Location, Problem, UsageError
from .load import Document, Loaded, load_file

YAML_SUFFIXES = (".yaml", ".yml")
ROOT_FILE = "funnel.yaml"
MAX_FILES = 10_000


@dataclass(frozen=True)
class Source:
    """One definition: its display name and the files it is made of (root file first)."""

    name: str
    files: Tuple[Path, ...]
    # The directory the files were found in: links out of it are not followed.
    root: Optional[Path] = None


def display_path(path: Path) -> str:
    """A path as users see it: relative to the working directory when inside it."""
    try:
        here = Path(os.path.realpath(Path.cwd()))
        real = Path(os.path.realpath(path.parent)) / path.name  # the link itself, not where it points
        return real.relative_to(here).as_posix() if path.is_absolute() else path.as_posix()
    except ValueError:
        return path.as_posix()


def _yaml_files(directory: Path) -> List[Path]:
    found: List[Path] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            # Anything named like YAML is checked (a broken link or a pipe is reported, not skipped).
            if f.endswith(YAML_SUFFIXES) and not f.startswith(".") and not (Path(root) / f).is_dir():
                found.append(Path(root) / f)
                if len(found) > MAX_FILES:
                    raise UsageError(f"{display_path(directory)}: more than {MAX_FILES:,} YAML files",
                                     "point fnl at a narrower directory")
    return found


def discover(paths: Tuple[str, ...]) -> List[Source]:
    """Expand command-line paths into definitions. Raises UsageError for a path that
    does not exist or cannot be read, or a directory with no YAML in it."""
    sources: List[Source] = []
    seen = set()
    for source in _expand(paths):
        key = tuple(os.path.realpath(f) for f in source.files)
        if key not in seen:  # the same definition named twice is checked once
            seen.add(key)
            sources.append(source)
    return sources


def _split_root(path: Path) -> Optional[Path]:
    """The directory of the split definition a file belongs to, if any."""
    for folder in Path(os.path.realpath(path)).parents:
        if (folder / ROOT_FILE).is_file():
            return folder
        if folder == Path(os.path.realpath(Path.cwd())) or (folder / ".git").exists():
            break
    return None


def _expand(paths: Tuple[str, ...]) -> List[Source]:
    sources: List[Source] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"{raw}: no such file or directory", "check the path; run `fnl validate funnels/` for the examples")
        if not path.is_file() and not path.is_dir():
            raise UsageError(f"{raw}: is a pipe, device or socket, not a YAML file",
                             "point fnl at a definition file, or at a folder of them")
        if path.is_file():
            if not os.access(path, os.R_OK):
                raise UsageError(f"{raw}: permission denied", "make the file readable")
            root = _split_root(path)
            # A file of a split definition is checked as part of its whole definition.
            sources.extend(_find(root) if root is not None else [Source(display_path(path), (path,))])
            continue
        if not os.access(path, os.R_OK | os.X_OK):
            raise UsageError(f"{raw}: permission denied", "make the directory readable")
        found = _find(path)
        if not found:
            raise UsageError(f"{raw}: no YAML files (*.yaml, *.yml) in this directory",
                             "point fnl at a definition file or a directory of them")
        sources.extend(found)
    return sources


def _find(directory: Path) -> List[Source]:
    if (directory / ROOT_FILE).is_file():
        files = _yaml_files(directory)
        root = directory / ROOT_FILE
        return [Source(display_path(directory), (root,) + tuple(f for f in files if f != root), directory)]
    out: List[Source] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            out.extend(_find(entry))
        elif entry.name.endswith(YAML_SUFFIXES):
            out.append(Source(display_path(entry), (entry,), directory))
    return out


def load_source(source: Source) -> Loaded:
    """Load every file of a definition and merge them."""
    loaded = [load_file(f, display_path(f), source.root) for f in source.files]
    problems = tuple(p for item in loaded for p in item.problems)
    if any(item.document is None for item in loaded):
        return Loaded(None, problems)
    docs = [item.document for item in loaded if item.document is not None]
    if len(docs) == 1:
        return Loaded(docs[0], problems)
    merged = merge(docs)
    return Loaded(merged.document, problems + merged.problems)



def merge(docs: List[Document]) -> Loaded:
    """Merge documents section by section; a value defined twice is a problem."""
    data: Dict[str, Any] = {}
    origin: Dict[JsonPath, Location] = {}
    problems: List[Problem] = []
    values: Dict[JsonPath, Location] = {}
    keys: Dict[JsonPath, Location] = {}
    scalars = {}
    lines = {}
    for doc in docs:
        lines.update(doc.lines)
        if not isinstance(doc.data, dict):
            loc = doc.locate(())
            problems.append(Problem("FNL007", "a file of a split definition must be a mapping of sections",
                                    loc, (), "start the file with a section such as `sequences:`",
                                    source_line=doc.source_line(loc)))
            continue
        for key, value in doc.data.items():
            here = doc.keys.get((key,), doc.locate((key,)))
            if key not in data:
                data[key] = value if not isinstance(value, dict) else dict(value)
                origin[(key,)] = here
                if isinstance(value, dict):
                    for sub in value:
                        origin[(key, sub)] = doc.keys.get((key, sub), here)
                continue
            if isinstance(data[key], dict) and isinstance(value, dict):
                for sub, subvalue in value.items():
                    sub_here = doc.keys.get((key, sub), here)
                    if sub in data[key]:
                        first = origin[(key, sub)]
                        problems.append(Problem(
                            "FNL008", f"`{key}.{sub}` is defined twice: first in {first.file}:{first.line}",
                            sub_here, (key, sub), "keep one definition; each entry belongs in one file",
                            source_line=doc.source_line(sub_here)))
                        continue
                    data[key][sub] = subvalue
                    origin[(key, sub)] = sub_here
                continue
            first = origin[(key,)]
            problems.append(Problem("FNL008", f"`{key}` is defined twice: first in {first.file}:{first.line}",
                                    here, (key,), "keep it in one file (only mapping sections can be split across files)",
                                    source_line=doc.source_line(here)))
        values.update({p: l for p, l in doc.values.items() if p not in values})
        keys.update({p: l for p, l in doc.keys.items() if p not in keys})
        scalars.update({p: s for p, s in doc.scalars.items() if p not in scalars})
    # The merged root is located at the root file.
    values[()] = docs[0].values.get((), Location(docs[0].files[0]))
    # A conflict keeps the first definition and goes on, so the rest is still checked.
    files = tuple(f for d in docs for f in d.files)
    return Loaded(Document(data, files, values, keys, scalars, lines), tuple(problems))
