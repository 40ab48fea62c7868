"""Reading a definition as it was at a git revision, for `fnl plan --base REV`.

Only what a definition needs is copied out of the revision: the files under the path
asked about, the whole split definition a file of one belongs to, the `templates`
folders the default template lookup looks at, and then the definition's own template
folder. Blobs come one at a time through `git cat-file`, with their number and sizes
bounded, so memory stays small however large the repository is. A link in the revision
becomes the same link in the copy, so the loader refuses a link out of the tree there
exactly as it does in the working tree; the copy's root holds an empty `.git` folder so
that it is the root of its tree, as the repository was.
"""
from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Generator, List, Optional, Set, Tuple

from .errors import UsageError
from .load import MAX_BYTES
from .sources import MAX_FILES, REFUSED, YAML_SUFFIXES, Source, load_source, real, templates_folder, within

# Bytes of one file copied from the revision. A larger file is copied as a stand-in that
# only says how large it is (a definition that large is refused before it is read).
MAX_BLOB = MAX_BYTES
# Bytes copied for one `fnl plan --base` in all.
MAX_TOTAL = 64 * 1024 * 1024
MAX_LINK = 4096
# Links followed from a `templates:` path to the folder it names.
MAX_HOPS = 8
# Folder levels copied: beyond the depth the loader reads, within what removing the copy handles.
MAX_COPY_DEPTH = 160
TIMEOUT = 120

LINK, GITLINK = 0o120000, 0o160000


def repo_root(start: Path) -> Path:
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True,
                             timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run git: {exc}", "install git, or compare two files: fnl plan OLD NEW") from None
    if out.returncode != 0:
        raise UsageError(f"{start} is not inside a git repository", "use --base only in a git checkout, "
                         "or compare two files: fnl plan OLD NEW")
    return Path(os.fsdecode(out.stdout.rstrip(b"\n")))


class Revision:
    """A temporary copy of the parts of one revision that definitions need (removed on exit)."""

    def __init__(self, root: Path, rev: str) -> None:
        if rev.startswith("-"):
            raise UsageError(f"--base {rev!r} is not a revision", "name a commit, branch or tag, such as origin/main")
        self.root = root
        self.rev = rev
        out = self._git("rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}")
        if out.returncode != 0:
            message = out.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["unknown revision"]
            if message[0].startswith("fatal: Needed a single revision"):
                message = ["unknown revision"]
            raise UsageError(f"--base {rev}: {message[0]}", "name a commit, branch or tag that exists, such as HEAD~1")
        self.commit = out.stdout.decode("ascii", "replace").strip()
        self._tmp = tempfile.TemporaryDirectory(prefix="fnl-base-")
        self.dir = Path(real(self._tmp.name) or self._tmp.name)
        (self.dir / ".git").mkdir()
        self._copied: Set[str] = set()
        self._files = 0
        self._bytes = 0

    def __enter__(self) -> "Revision":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._tmp.cleanup()

    def _git(self, *args: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["git", "--literal-pathspecs", *args], cwd=self.root, capture_output=True,
                                  timeout=TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UsageError(f"cannot run git: {exc}", "check the repository") from None

    # -- what to copy ---------------------------------------------------------------

    def add_definition(self, rel: PurePosixPath) -> Path:
        """Copy what the definitions at `rel` (a file or folder, relative to the repository
        root) need besides their templates; return where `rel` is in the copy."""
        ancestors = [PurePosixPath(*rel.parts[:i]) for i in range(len(rel.parts))]
        specs = [str(a / "funnel.yaml") for a in ancestors] + [str(a / "templates") for a in ancestors + [rel]]
        for mode, _oid, _size, path in self._list(specs, recursive=False):
            name = path.rsplit(b"/", 1)[-1]
            if name == b"funnel.yaml" and stat.S_ISREG(mode):
                parent = path.rsplit(b"/", 1)[0] if b"/" in path else b""
                self._copy(os.fsdecode(parent))  # the split definition a file of it belongs to
            elif name == b"templates" and stat.S_ISDIR(mode):
                self._mkdirs(path, file=False)  # the default template lookup stops at the first one
            elif name == b"templates" and mode == LINK:
                self._write([(mode, _oid, _size, path)])
        self._copy(str(rel))
        return self.dir / str(rel)

    def add_templates(self, source: Source) -> None:
        """Copy the template folder of a definition found in the copy, through the links
        in the revision that lead to it (each a link in the copy, checked like any other)."""
        loaded = load_source(source)
        if loaded.document is None or not isinstance(loaded.document.data, dict):
            return
        name = loaded.document.data.get("funnel")
        for _ in range(MAX_HOPS):
            folder, problem = templates_folder(loaded.document, name if isinstance(name, str) else None)
            target = real(folder)
            if problem is not None or folder == REFUSED or target is None or not within(target, str(self.dir)):
                return
            rel = os.path.relpath(target, self.dir)
            parts = [] if rel == "." else rel.split(os.sep)
            prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            if not prefixes:  # the root of the repository itself
                self._copy("")
                return
            links = [e for e in self._list(prefixes, recursive=False)
                     if e[0] == LINK and not os.path.lexists(os.path.join(os.fsencode(self.dir), e[3]))]
            if not links:
                self._copy(rel)
                return
            self._write(links)  # then look again: the folder is where the links lead

    # -- git plumbing -----------------------------------------------------------------

    def _copy(self, rel: str) -> None:
        """Copy every file at or below `rel` ("." for all of it)."""
        rel = "" if rel in (".", "") else rel
        if "" in self._copied or any(rel == done or rel.startswith(done + "/") for done in self._copied):
            return
        self._copied.add(rel)
        self._write(self._list([rel] if rel else [], recursive=True))

    def _list(self, specs: List[str], recursive: bool) -> List[Tuple[int, str, int, bytes]]:
        """(mode, object, size, path) of the entries `git ls-tree` lists for `specs`."""
        args = ["ls-tree", "-z", "--long"] + (["-r"] if recursive else []) + [self.commit, "--"]
        try:
            proc = subprocess.Popen(["git", "--literal-pathspecs", *args, *specs], cwd=self.root,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise UsageError(f"cannot run git: {exc}", "check the repository") from None
        entries: List[Tuple[int, str, int, bytes]] = []
        pending = b""
        assert proc.stdout is not None
        try:
            while True:
                chunk = proc.stdout.read(65536)
                if not chunk:
                    break
                records = (pending + chunk).split(b"\0")
                pending = records.pop()
                for record in records:
                    meta, _, path = record.partition(b"\t")
                    fields = meta.split()
                    if len(fields) != 4:
                        continue
                    size = int(fields[3]) if fields[3].isdigit() else 0
                    entries.append((int(fields[0], 8), fields[2].decode("ascii"), size, path))
                    if len(entries) + self._files > MAX_FILES:
                        raise UsageError(f"--base {self.rev}: more than {MAX_FILES:,} files to read",
                                         "name a narrower path: one definition, or the folder of a few")
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        return entries

    def _write(self, entries: List[Tuple[int, str, int, bytes]]) -> None:
        """Write the entries into the copy: files first, then links (so no file is ever
        written through a link), each read from git within the bounds."""
        files = [e for e in entries if stat.S_ISREG(e[0])]
        links = [e for e in entries if e[0] == LINK and e[2] <= MAX_LINK]
        wanted = [e for e in files if e[2] <= MAX_BLOB] + links
        self._files += len(files) + len(links)
        self._bytes += sum(e[2] for e in wanted)
        if self._bytes > MAX_TOTAL:
            bound = f"{MAX_TOTAL // 1048576} MiB" if MAX_TOTAL >= 1048576 else f"{MAX_TOTAL // 1024} KiB"
            raise UsageError(f"--base {self.rev}: more than {bound} of definitions and templates to read",
                             "name a narrower path: one definition, or the folder of a few")
        blobs = self._blobs([e[1] for e in wanted])  # read one at a time, in the order of `wanted`
        for mode, oid, size, path in files:
            data = next(blobs) if size <= MAX_BLOB else None
            target = self._mkdirs(path, file=True)
            if target is None:
                continue
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except OSError:
                continue
            with os.fdopen(fd, "wb") as fh:
                if data is not None:
                    fh.write(data)
                else:  # a stand-in: as large as the file (a definition) or just over every bound
                    fh.truncate(size if path.endswith(tuple(s.encode() for s in YAML_SUFFIXES)) else MAX_BLOB + 1)
        for mode, oid, size, path in links:
            data = next(blobs)
            target = self._mkdirs(path, file=True)
            if target is not None:
                try:
                    os.symlink(data, target)
                except (OSError, ValueError):
                    continue
        blobs.close()

    def _blobs(self, oids: List[str]) -> Generator[bytes, None, None]:
        """The contents of blobs (each within the bounds), one request at a time."""
        if not oids:
            return
        try:
            proc = subprocess.Popen(["git", "cat-file", "--batch"], cwd=self.root, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise UsageError(f"cannot run git: {exc}", "check the repository") from None
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for oid in oids:
                proc.stdin.write(oid.encode("ascii") + b"\n")
                proc.stdin.flush()
                header = proc.stdout.readline(200).split()
                if len(header) != 3 or header[1] != b"blob" or not header[2].isdigit() or int(header[2]) > MAX_BLOB:
                    raise UsageError(f"--base {self.rev}: git cat-file gave an unexpected answer for {oid}",
                                     "check the repository with `git fsck`")
                size = int(header[2])
                data = proc.stdout.read(size)
                proc.stdout.read(1)
                yield data
        finally:
            proc.stdin.close()
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def _mkdirs(self, path: bytes, file: bool) -> Optional[bytes]:
        """Create the folders of `path` in the copy, one at a time and never through a link;
        return the full path (None where it cannot be made: a name no file system takes)."""
        parts = path.split(b"/")
        if any(p in (b"", b".", b"..", b".git") for p in parts):
            return None
        if len(parts) > MAX_COPY_DEPTH:  # deep enough for the loader to say the folders are too deep
            parts, file = parts[:MAX_COPY_DEPTH], False
        here = os.fsencode(self.dir)
        for part in parts[:-1] if file else parts:
            here = here + b"/" + part
            try:
                info = os.lstat(here)
            except FileNotFoundError:
                try:
                    os.mkdir(here)
                except OSError:
                    return None
                continue
            except OSError:
                return None
            if not stat.S_ISDIR(info.st_mode):
                return None
        return here + b"/" + parts[-1] if file else None
