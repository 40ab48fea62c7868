"""Reading a definition as it was at a git revision, for `fnl plan --base REV`."""
from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .errors import UsageError


def repo_root(start: Path) -> Path:
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run git: {exc}", "install git, or compare two files: fnl plan OLD NEW") from None
    if out.returncode != 0:
        raise UsageError(f"{start} is not inside a git repository", "use --base only in a git checkout, "
                         "or compare two files: fnl plan OLD NEW")
    return Path(out.stdout.strip())


def export(root: Path, rev: str) -> tempfile.TemporaryDirectory:  # type: ignore[type-arg]
    """The tree at `rev` unpacked into a temporary directory (removed when closed)."""
    if rev.startswith("-"):
        raise UsageError(f"--base {rev!r} is not a revision", "name a commit, branch or tag, such as origin/main")
    try:
        out = subprocess.run(["git", "archive", "--format=tar", rev, "--"], cwd=root, capture_output=True,
                             timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run git archive: {exc}", "check the repository") from None
    if out.returncode != 0:
        message = out.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["unknown revision"]
        raise UsageError(f"--base {rev}: {message[0]}", "name a commit, branch or tag that exists, such as HEAD~1")
    tmp = tempfile.TemporaryDirectory(prefix="fnl-base-")
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        tar.extractall(tmp.name, filter="data")
    return tmp
