"""`fnl init DIR`: a funnel repository that works as written.

It writes a starter funnel (`starter`) that validates, compiles and simulates; its email
templates, behaviour model and forecast gates; the JSON Schemas its files name on their
first line (so any editor with yaml-language-server checks them, offline); VS Code
settings; a pre-commit config; and a GitHub Actions workflow. The hook and the workflow
install fnl from its git repository at one commit: the one this fnl was installed from
(`source`), or `--from URL@REV`.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import List, Optional, Tuple

from ..errors import UsageError
from . import starter

NAME = re.compile(r"^[a-z][a-z0-9-]*$")


def source(given: Optional[str] = None) -> Tuple[str, str]:
    """(git URL, commit) fnl is installed from: `given` (`URL@REV`), else what pip
    recorded for a git install (`direct_url.json`), else the git checkout fnl runs from
    (its `origin`, or the checkout itself as a file:// URL)."""
    if given:
        url, sep, rev = given.rpartition("@")
        if not sep or not url or not rev or url.endswith(":"):
            raise UsageError(f"--from {given}: give the git URL and the commit or tag, as URL@REV",
                             "for example --from https://github.com/you/fnl.git@v0.1.0")
        return url, rev
    import importlib.metadata

    try:
        recorded = importlib.metadata.distribution("fnl").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        recorded = None
    info: dict = {}
    if recorded:
        try:
            info = json.loads(recorded)
        except ValueError:
            info = {}
        info = info if isinstance(info, dict) else {}
        vcs = info.get("vcs_info") or {}
        if vcs.get("vcs") == "git" and vcs.get("commit_id") and info.get("url"):
            return str(info["url"]), str(vcs["commit_id"])
    # Installed from a folder (`pip install .`), or run from a checkout: that folder's git.
    candidates = []
    url = str(info.get("url") or "")
    if url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        candidates.append(Path(unquote(urlsplit(url).path)))
    candidates.append(Path(__file__).resolve().parents[2])
    for checkout in candidates:
        if not (checkout / "fnl.py").is_file():
            continue  # not fnl's own source tree (say, a virtualenv inside some other repository)
        try:
            top = _git(checkout, "rev-parse", "--show-toplevel")
            rev = _git(checkout, "rev-parse", "HEAD")
        except UsageError:
            continue
        if Path(top).resolve() != checkout.resolve():
            continue
        try:
            remote = _git(checkout, "remote", "get-url", "origin")
        except UsageError:
            remote = checkout.as_uri()
        return remote, rev
    raise UsageError("cannot tell which git repository this fnl was installed from",
                     "give it with --from URL@REV, such as --from https://github.com/you/fnl.git@v0.1.0")


def _git(folder: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"git {' '.join(args)}: {exc}", "install git") from None
    if done.returncode != 0 or not done.stdout.strip():
        raise UsageError(f"git {' '.join(args)} in {folder}: {done.stderr.strip() or 'no answer'}", "")
    return done.stdout.strip()


def files(name: str, repo: str, rev: str) -> List[Tuple[str, str]]:
    """Every file of the starter repository: (path, text)."""
    from ..validate import _schema_text

    fill = {"name": name, "repo": repo, "rev": rev}
    out = [
        (f"funnels/{name}.yaml", starter.FUNNEL.format(**fill)),
        (f"funnels/{name}.behavior.yaml", starter.BEHAVIOR.format(**fill)),
        (f"funnels/{name}.expect.yaml", starter.EXPECT.format(**fill)),
        (f"templates/{name}/_partials/footer.html.j2", starter.FOOTER_HTML.format(**fill)),
        (f"templates/{name}/_partials/footer.txt.j2", starter.FOOTER_TEXT.format(**fill)),
    ]
    out += [(f"templates/{name}/{email}.j2", text.format(**fill)) for email, text in starter.EMAILS.items()]
    for schema in ("funnel", "section", "behavior", "expect"):
        out.append((f"schemas/{schema}.schema.json", _schema_text(schema)))
    out += [
        (".pre-commit-config.yaml", starter.PRE_COMMIT.format(**fill)),
        (".github/workflows/fnl.yml", starter.WORKFLOW.format(**fill)),
        (".vscode/settings.json", starter.VSCODE_SETTINGS.format(**fill)),
        (".vscode/extensions.json", starter.VSCODE_EXTENSIONS.format(**fill)),
        (".gitignore", starter.GITIGNORE.format(**fill)),
        ("README.md", starter.README.format(**fill)),
    ]
    return out


def init(target: str, name: Optional[str] = None, from_: Optional[str] = None) -> List[Path]:
    """Write the starter repository into `target` (new or empty); the paths written."""
    folder = Path(target)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"{target} is not empty", "give a new or empty directory: fnl init writes a whole repository")
    funnel = name or re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-")
    if not NAME.match(funnel or ""):
        raise UsageError(f"`{funnel}` cannot name a funnel", "give --name, with lower-case letters, digits and `-`, "
                         "starting with a letter, such as --name acme-b2b")
    repo, rev = source(from_)
    written = []
    for rel, text in files(funnel, repo, rev):
        path = folder / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
        except OSError as exc:
            raise UsageError(f"{path}: cannot write: {exc.strerror or exc}", "give a directory you can write to") \
                from None
        written.append(path)
    return written
