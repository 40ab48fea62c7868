"""Which files make up which definitions, and merging a directory into one document.

A path on the command line is either a YAML file (one definition) or a directory. A
directory that holds `funnel.yaml` is one definition split across every YAML file
beneath it; any other directory is searched for definitions (files and such
directories). A definition split across files merges section by section: each file may
add entries to `sequences`, `segments`, `profile` and the other named sections, and
defining the same entry, or the same top-level value, in two files is a problem that
names both places.

A search below a folder named on the command line skips what does not belong to the
project: folders and files git ignores (inside a git work tree; git is asked once per
named folder, within `GIT_TIMEOUT`), dependency, cache and virtual-environment folders
(`VENDORED`, any folder holding `pyvenv.cfg`, and every name starting with `.`), and
behaviour models (`*.behavior.yaml`, inputs of `fnl simulate` that live beside funnels).
A path named on the command line is always read.

Definitions come from pull requests, so every walk is bounded and follows no links to
folders (a link to a folder is a located problem), and a definition reads only inside
its tree: the git repository it is in or, outside one, the folder above its own folder
(`tree_root`). Its `templates:` folder must be inside that tree too.
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterator, List, Mapping, Optional, Tuple

from .errors import JsonPath, Location, Problem, UsageError
from .load import Document, Loaded, inside, load_bytes, load_file

YAML_SUFFIXES = (".yaml", ".yml")
ROOT_FILE = "funnel.yaml"
MAX_FILES = 10_000
# Files and folders one command looks at, and how deep below a searched folder it goes.
MAX_ENTRIES = 100_000
MAX_DEPTH = 64
# How far up a repository root is looked for.
MAX_UP = 256
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4095
# The template folder of a `templates:` value fnl refuses: never a folder, so it holds nothing.
REFUSED = Path(os.devnull) / "templates"
# Folders a search never enters (besides names starting with `.`, such as .git, .venv,
# .tox and .mypy_cache): other projects' files, caches and virtual environments.
VENDORED = frozenset({"node_modules", "bower_components", "__pycache__", "venv", "site-packages"})
# Behaviour models for `fnl simulate`: YAML beside the funnels, never a funnel or a section of one.
BEHAVIOUR_SUFFIXES = (".behavior.yaml", ".behavior.yml")
# Expectations (CI gates) for `fnl simulate`: likewise beside the funnels, never merged.
EXPECT_SUFFIXES = (".expect.yaml", ".expect.yml")
# How long git may take to say what it ignores, and how much it may say.
GIT_TIMEOUT = 5.0
MAX_GIT_OUTPUT = 16 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    """One definition: its display name and the files it is made of (root file first)."""

    name: str
    files: Tuple[Path, ...]
    # The directory the files were found in: links out of it are not followed.
    root: Optional[Path] = None
    # What finding the files already showed (a link to a folder, a folder too deep).
    problems: Tuple[Problem, ...] = ()
    # The file or folder the definition is (the link itself for a refused link).
    path: Optional[Path] = None


def real(path: Any) -> Optional[str]:
    """`os.path.realpath`, or None where there is no answer: a chain of links too long to
    follow (Python's realpath recurses once per link), a NUL byte, an unencodable name."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the kernel gave up after 40 links: so does fnl, at once
            return None
    except ValueError:
        return None
    try:
        return os.path.realpath(path)
    except (RecursionError, ValueError, OSError):
        return None


def _is(path: Path, kind: Any) -> bool:
    """Whether `path` (links followed) is a file or folder, as `stat.S_ISREG` or `S_ISDIR`
    says; False where it cannot be told (no permission, a loop of links, a name too long)."""
    try:
        return bool(kind(os.stat(path).st_mode))
    except (OSError, ValueError):
        return False


def within(real_path: str, base: str) -> bool:
    """Whether a real path is `base` or lies below it (both already resolved)."""
    return real_path == base or real_path.startswith(base.rstrip(os.sep) + os.sep)


def tree_root(folder: Path) -> Path:
    """The tree a definition in `folder` may read: the nearest folder at or above it that
    holds `.git` (a repository, or a revision `fnl plan --base` exported), else the folder
    above `folder`."""
    start = Path(real(folder) or os.path.abspath(folder))
    for i, candidate in enumerate((start, *start.parents)):
        if i > MAX_UP:
            break
        if os.path.lexists(candidate / ".git"):
            return candidate
    return start.parent


def definition_tree(first_file: Path) -> Path:
    """The tree of the definition whose root file is `first_file`: that of the folder
    holding the definition (for a split definition, the folder above its own folder)."""
    parent = Path(first_file).parent
    folder = Path(real(parent) or os.path.abspath(parent))
    return tree_root(folder.parent if Path(first_file).name == ROOT_FILE else folder)


def display_path(path: Path) -> str:
    """A path as users see it: relative to the working directory when inside it."""
    try:
        here = Path(real(Path.cwd()) or Path.cwd())
        parent = real(path.parent)
        if parent is None:
            return path.as_posix()
        real_path = Path(parent) / path.name  # the link itself, not where it points
        return real_path.relative_to(here).as_posix() if path.is_absolute() else path.as_posix()
    except (ValueError, OSError):
        return path.as_posix()


@dataclass
class Walked:
    """What a bounded walk met besides files and folders: links to folders (never
    followed), folders too deep to enter, folders it could not read."""

    links: List[Path] = field(default_factory=list)
    deep: List[Path] = field(default_factory=list)
    unreadable: List[Tuple[Path, str]] = field(default_factory=list)
    # Entries left to look at; shared by the walks of one command.
    budget: List[int] = field(default_factory=lambda: [MAX_ENTRIES])


def walk(top: Path, walked: Walked,
         max_depth: int = MAX_DEPTH) -> Iterator[Tuple[Path, List[str], List[str], List[str]]]:
    """(folder, folders, files, links to folders) for `top` and every folder below it, like
    `os.walk` but sorted, iterative, never through a link, at most `max_depth` levels deep
    and `MAX_ENTRIES` entries in all (then a usage error). Pruning the folders or links
    lists skips them; the links left are recorded in `walked`."""
    stack: List[Tuple[Path, int]] = [(top, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as entries:
                dirs: List[str] = []
                files: List[str] = []
                links: List[str] = []
                for entry in entries:
                    walked.budget[0] -= 1
                    if walked.budget[0] < 0:
                        raise UsageError(f"{display_path(top)}: more than {MAX_ENTRIES:,} files and folders",
                                         "point fnl at a narrower directory")
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            dirs.append(entry.name)
                        elif entry.is_symlink() and entry.is_dir():
                            links.append(entry.name)
                        else:
                            files.append(entry.name)
                    except OSError:  # a loop of links, or a name too long: the loader says why
                        files.append(entry.name)
        except OSError as exc:
            walked.unreadable.append((folder, exc.strerror or str(exc)))
            continue
        dirs.sort()
        files.sort()
        links.sort()
        yield folder, dirs, files, links
        walked.links.extend(folder / name for name in links)
        for name in reversed(dirs):
            if depth + 1 > max_depth:
                walked.deep.append(folder / name)
            else:
                stack.append((folder / name, depth + 1))


def walk_problems(walked: Walked) -> List[Tuple[Path, Problem]]:
    """A located problem for each link, too-deep folder and unreadable folder a walk met."""
    out: List[Tuple[Path, Problem]] = []
    for link in walked.links:
        out.append((link, Problem(
            "FNL006", "not read: it is a link to a folder, and fnl does not follow links to folders",
            Location(display_path(link)), help="replace the link with the folder itself, or name that folder "
            "on the command line")))
    for folder in walked.deep:
        out.append((folder, Problem(
            "FNL014", f"not read: this folder is nested more than {MAX_DEPTH} levels deep",
            Location(display_path(folder)), help="move the definitions up; no real project nests this deep")))
    for folder, why in walked.unreadable:
        out.append((folder, Problem("FNL006", f"cannot read folder: {why}", Location(display_path(folder)),
                                    help="make the folder readable, or move it out of the searched folder")))
    return out


def is_behaviour_model(name: str) -> bool:
    """Whether a file name is that of a behaviour model (`*.behavior.yaml`) or of
    expectations (`*.expect.yaml`), files `fnl simulate` reads, not a funnel."""
    return name.endswith(BEHAVIOUR_SUFFIXES + EXPECT_SUFFIXES)


@dataclass(frozen=True)
class Skipped:
    """What git ignores below a searched folder: the folders whose whole content it
    ignores and the single files it ignores, joined to that folder as the walk joins
    them. Tracked files are never among them."""

    paths: FrozenSet[Path] = frozenset()


def git_ignored(top: Path) -> Skipped:
    """What git ignores below `top` (`git ls-files --others --ignored --exclude-standard
    --directory`), or nothing where git cannot say: no git, not a work tree, a git that
    fails or takes longer than `GIT_TIMEOUT`. A folder git ignores as a whole, when named
    on the command line, is searched as if nothing were ignored: the user asked for it."""
    if shutil.which("git") is None or not _in_work_tree(top):
        return Skipped()
    env = {k: v for k, v in os.environ.items()
           if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX")}
    env["GIT_OPTIONAL_LOCKS"] = "0"  # a read: never rewrite the index
    # core.fsmonitor names a program in a repository's own config: a folder from elsewhere
    # must not make fnl run it.
    out = _bounded_output(["git", "-c", "core.fsmonitor=false", "ls-files", "--others", "--ignored",
                           "--exclude-standard", "--directory", "-z"], top, env)
    if out is None:
        return Skipped()
    names = [os.fsdecode(name) for name in out.split(b"\0") if name]
    if "./" in names:
        return Skipped()
    return Skipped(frozenset(top / name.rstrip("/") for name in names))


def _in_work_tree(top: Path) -> bool:
    start = Path(real(top) or os.path.abspath(top))
    return any(os.path.lexists(folder / ".git") for i, folder in enumerate((start, *start.parents)) if i <= MAX_UP)


def _bounded_output(argv: List[str], cwd: Path, env: Dict[str, str]) -> Optional[bytes]:
    """Standard output of a command that exits 0 within `GIT_TIMEOUT` and prints at most
    `MAX_GIT_OUTPUT` bytes; None otherwise (the command and what it started are killed)."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=os.name == "posix")
    except (OSError, ValueError):
        return None
    chunks: List[bytes] = []
    size = [0]

    def read() -> None:
        assert proc.stdout is not None
        while size[0] <= MAX_GIT_OUTPUT:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                return
            size[0] += len(chunk)
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(GIT_TIMEOUT)
    code: Optional[int] = None
    if not reader.is_alive() and size[0] <= MAX_GIT_OUTPUT:
        try:
            code = proc.wait(timeout=GIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    if code is None:
        _kill(proc)
    proc.wait()
    reader.join(1.0)  # a child that escaped the kill may hold the pipe: the thread is a daemon
    if not reader.is_alive() and proc.stdout is not None:
        proc.stdout.close()
    return b"".join(chunks) if code == 0 else None


def _kill(proc: "subprocess.Popen[bytes]") -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - POSIX in CI
            proc.kill()
    except OSError:
        pass


def _prune(folder: Path, dirs: List[str], links: List[str], skipped: Skipped) -> None:
    """Leave out of a walk the folders (and links to folders) it must not enter."""
    dirs[:] = [d for d in dirs if _enters(folder / d, skipped) and not os.path.lexists(folder / d / "pyvenv.cfg")]
    links[:] = [d for d in links if _enters(folder / d, skipped)]


def _enters(path: Path, skipped: Skipped) -> bool:
    return not path.name.startswith(".") and path.name not in VENDORED and path not in skipped.paths


def _is_candidate(path: Path, skipped: Skipped) -> bool:
    """Whether a file met by a search may be (part of) a definition."""
    name = path.name
    return (name.endswith(YAML_SUFFIXES) and not name.startswith(".") and not is_behaviour_model(name)
            and path not in skipped.paths)


def _yaml_files(directory: Path, walked: Walked, skipped: Skipped) -> List[Path]:
    found: List[Path] = []
    for folder, dirs, files, links in walk(directory, walked):
        _prune(folder, dirs, links, skipped)
        for f in files:
            # Anything named like YAML is checked (a broken link or a pipe is reported, not skipped).
            if _is_candidate(folder / f, skipped):
                found.append(folder / f)
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
        key = tuple(real(f) or str(f) for f in source.files) or ("", str(source.path))
        if key not in seen:  # the same definition named twice is checked once
            seen.add(key)
            sources.append(source)
    return sources


def _split_root(path: Path) -> Optional[Path]:
    """The directory of the split definition a file belongs to, if any."""
    here = real(Path.cwd())
    start = real(path)
    if start is None:
        return None
    for folder in Path(start).parents:
        if _is(folder / ROOT_FILE, stat.S_ISREG):
            return folder
        if str(folder) == here or os.path.lexists(folder / ".git"):
            break
    return None


def _expand(paths: Tuple[str, ...]) -> List[Source]:
    sources: List[Source] = []
    walked = Walked()
    for raw in paths:
        path = Path(raw)
        try:
            info = os.stat(raw)
        except (OSError, ValueError) as exc:
            missing = isinstance(exc, FileNotFoundError)
            why = "no such file or directory" if missing else getattr(exc, "strerror", None) or str(exc)
            raise UsageError(f"{raw}: {why}", "check the path; run `fnl validate funnels/` for the examples"
                             if missing else "check the path") from None
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{raw}: is a pipe, device or socket, not a YAML file",
                             "point fnl at a definition file, or at a folder of them")
        _refuse_outward_link(raw, "file" if stat.S_ISREG(info.st_mode) else "folder")
        if stat.S_ISREG(info.st_mode):
            if not os.access(path, os.R_OK):
                raise UsageError(f"{raw}: permission denied", "make the file readable")
            if is_behaviour_model(path.name):
                kind = ("expectations file (*.expect.yaml)" if path.name.endswith(EXPECT_SUFFIXES)
                        else "behaviour model (*.behavior.yaml)")
                raise UsageError(f"{raw}: is a {kind}, not a funnel definition",
                                 f"name the funnel definition; {kind.split(' (')[0]}s are read by `fnl simulate`")
            root = _split_root(path)
            # A file of a split definition is checked as part of its whole definition.
            sources.extend(_find(root, walked) if root is not None
                           else [Source(display_path(path), (path,), path=path)])
            continue
        if not os.access(path, os.R_OK | os.X_OK):
            raise UsageError(f"{raw}: permission denied", "make the directory readable")
        found = _find(path, walked)
        if not found:
            raise UsageError(f"{raw}: no YAML files (*.yaml, *.yml) in this directory",
                             "point fnl at a definition file or a directory of them; a search skips what git "
                             "ignores, node_modules-style folders and *.behavior.yaml files")
        sources.extend(found)
    return sources


def _refuse_outward_link(raw: str, kind: str) -> None:
    """A path named on the command line may go through links only within its own tree (the
    tree of where it is written to be): a pull request must not turn `fnl validate funnels`
    or `fnl plan --base main funnels/acme.yaml` into a read of another folder or file."""
    lexical = os.path.abspath(raw)
    target = real(raw)
    if target == lexical:
        return
    folder = Path(lexical).parent
    tree = folder.parent
    for i, candidate in enumerate((folder, *folder.parents)):
        if i > MAX_UP:
            break
        if os.path.lexists(candidate / ".git"):
            tree = candidate
            break
    base = real(tree)
    if target is None or base is None or not within(target, base):
        raise UsageError(f"{raw}: is a link to a {kind} outside {_place(tree)}",
                         f"name the {kind} itself{f' ({target})' if target else ''}, if you mean to check it")


def _find(directory: Path, walked: Walked) -> List[Source]:
    skipped = git_ignored(directory)
    if _is(directory / ROOT_FILE, stat.S_ISREG):
        return [_split(directory, walked, skipped)]
    found: List[Tuple[Tuple[str, ...], Source]] = []
    mine = Walked(budget=walked.budget)
    for folder, dirs, files, links in walk(directory, mine):
        _prune(folder, dirs, links, skipped)
        for d in [d for d in dirs if _is(folder / d / ROOT_FILE, stat.S_ISREG)]:
            dirs.remove(d)
            found.append(((folder / d).parts, _split(folder / d, walked, skipped)))
        for f in files:
            if _is_candidate(folder / f, skipped):
                found.append(((folder / f).parts, Source(display_path(folder / f), (folder / f,), folder,
                                                         path=folder / f)))
    for where, problem in walk_problems(mine):
        found.append((where.parts, Source(display_path(where), (), where.parent, (problem,), where)))
    # In the order of a depth-first walk with each folder's entries sorted by name.
    return [source for _, source in sorted(found, key=lambda item: item[0])]


def _split(directory: Path, walked: Walked, skipped: Skipped) -> Source:
    mine = Walked(budget=walked.budget)
    files = _yaml_files(directory, mine, skipped)
    root = directory / ROOT_FILE
    problems = tuple(problem for _, problem in walk_problems(mine))
    return Source(display_path(directory), (root,) + tuple(f for f in files if f != root), directory, problems,
                  directory)


def load_source(source: Source, buffers: Optional[Mapping[str, bytes]] = None) -> Loaded:
    """Load every file of a definition and merge them. A file in `buffers` (keyed by its
    real path: an editor's unsaved text) is read from there instead of from disk, with the
    same checks (`load.load_bytes`)."""
    problems: List[Problem] = list(source.problems)
    loaded: List[Loaded] = []
    for f in source.files:
        if real(f) is None:  # a chain of links too long to follow: the loader's checks cannot run
            loaded.append(Loaded(None, (Problem("FNL006", "cannot read file: it is a chain of too many links",
                                                Location(display_path(f)),
                                                help="replace the link with the file itself"),)))
        elif buffers and real(f) in buffers and (source.root is None or inside(f, source.root)):
            loaded.append(load_bytes(display_path(f), buffers[real(f) or ""]))
        else:
            loaded.append(load_file(f, display_path(f), source.root))
    problems.extend(p for item in loaded for p in item.problems)
    if not loaded or any(item.document is None for item in loaded):
        return Loaded(None, tuple(problems))
    docs = [item.document for item in loaded if item.document is not None]
    if len(docs) == 1:
        doc = docs[0]
    else:
        merged = merge(docs)
        problems.extend(merged.problems)
        doc = merged.document  # type: ignore[assignment]
    _, problem = templates_folder(doc)
    if problem is not None:
        problems.append(problem)
    return Loaded(doc, tuple(problems))


def templates_folder(doc: Document, name: Optional[str] = None) -> Tuple[Path, Optional[Problem]]:
    """The folder of a definition's templates, and the problem that makes fnl refuse it
    (then the folder is `REFUSED`, which holds nothing). `templates:` is relative to the
    file that says it; without it, `templates/<name>` in the nearest folder (up to the
    definition's tree) that has a `templates/` folder. Either must lie inside the tree."""
    tree = definition_tree(Path(doc.files[0]))
    data = doc.data if isinstance(doc.data, dict) else {}
    value = data.get("templates")
    if "templates" in data:
        if not isinstance(value, str):
            return REFUSED, None  # the schema reports it
        loc = doc.locate(("templates",))
        bad = _unusable(value)
        if bad is not None:
            offset, message, help = bad
            where = doc.expression_location(("templates",), offset)
            return REFUSED, Problem("FNL104", message, where, ("templates",), help,
                                    source_line=doc.source_line(where))
        holder = real(Path(loc.file).parent)
        target = real(os.path.join(holder, value)) if holder is not None else None
        if target is None or len(os.fsencode(target)) > MAX_PATH_BYTES:
            return REFUSED, Problem("FNL104", "`templates` is not a folder fnl can use", loc, ("templates",),
                                    "name a folder with a shorter path, without links",
                                    source_line=doc.source_line(loc))
        if not within(target, str(tree)):
            return REFUSED, Problem(
                "FNL006", f"`templates` is outside {_describe(tree)}: fnl reads templates only inside it", loc,
                ("templates",), f"keep the templates inside {_place(tree)}, such as `../templates/<funnel>` "
                "beside the definitions' folder", source_line=doc.source_line(loc))
        return Path(target), None
    start = Path(real(Path(doc.files[0]).parent) or os.path.abspath(Path(doc.files[0]).parent))
    for i, folder in enumerate((start, *start.parents)):
        if i > MAX_UP or not within(str(folder), str(tree)):
            break
        if _is(folder / "templates", stat.S_ISDIR):
            found = real(folder / "templates")
            if found is None or not within(found, str(tree)):
                loc = Location(display_path(folder / "templates"))
                return REFUSED, Problem("FNL006", "not read: the templates folder is a link to a folder outside "
                                        f"{_describe(tree)}", loc, (), "replace the link with the folder itself")
            return (folder / "templates" / name if name else folder / "templates"), None
    return start / "templates" / (name or ""), None


def _unusable(value: str) -> Optional[Tuple[int, str, str]]:
    """(offset, what is wrong, fix) for a `templates:` value no file system takes."""
    if "\x00" in value:
        return value.index("\x00"), "`templates` contains a NUL character", "remove it; a folder name cannot hold one"
    try:
        size = len(os.fsencode(value))
    except UnicodeError:
        return 0, "`templates` is not a valid folder name (it holds a lone surrogate)", "retype the folder name"
    if size > MAX_PATH_BYTES:
        return 0, f"`templates` is {size:,} bytes long; paths are at most {MAX_PATH_BYTES:,}", "name a nearer folder"
    offset = 0
    for part in value.split("/"):
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            return (offset, f"a folder name in `templates` is {len(os.fsencode(part)):,} bytes long; "
                    f"names are at most {MAX_NAME_BYTES}", "use a shorter folder name")
        offset += len(part) + 1
    return None


def _place(tree: Path) -> str:
    name = display_path(tree)
    return "the current folder" if name == "." else name


def _describe(tree: Path) -> str:
    if os.path.lexists(tree / ".git"):
        return f"the repository {display_path(tree)}" if display_path(tree) != "." else "this repository"
    return f"{_place(tree)} (outside a git repository, the folder above the one holding the definition)"


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
