"""`fnl watch`: a real process watching real files (watchdog), edited the ways editors and
people edit them: a changed threshold, a half-written file, a burst of atomic saves, a
broken template, a renamed and a deleted definition. It says only what changed, and
nothing stops it but Ctrl-C."""
from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

import pytest

from conftest import REPO, clean_env


class Watching:
    """`fnl watch` as a subprocess, its output lines read on a thread."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(REPO / "fnl.py"), "watch", *args], cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=clean_env(PYTHONUNBUFFERED="1"))
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.seen: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def until_ready(self, timeout: float = 60) -> List[str]:
        """The lines up to and including the next `ready` line."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no `ready` within {timeout} s; so far: {self.seen + got}") from None
            got.append(line)
            if line.startswith("ready"):
                self.seen += got
                return got

    def quiet(self, seconds: float) -> List[str]:
        """Whatever it prints in the next `seconds` (nothing, if nothing changed)."""
        got = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                got.append(self.lines.get(timeout=0.05))
            except queue.Empty:
                pass
        self.seen += got
        return got

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=20)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "funnels", tmp_path / "funnels", ignore=shutil.ignore_patterns("acme", "newsletter*"))
    shutil.copytree(REPO / "templates" / "reference", tmp_path / "templates" / "reference")
    return tmp_path


def save(path: Path, text: str) -> None:
    """An editor's atomic save: a temporary file renamed over the original."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def test_it_says_what_changed_and_survives_every_state_of_the_files(tree: Path) -> None:
    w = Watching(tree, "funnels", "--leads", "300")
    try:
        first = w.until_ready(120)
        assert "added  funnels/reference.yaml" in first
        assert any(line.startswith("forecast funnels/reference.yaml: leads 300, reached mql") for line in first)
        assert first[-1].startswith("ready  1 definition, 0 errors")
        assert w.quiet(1.0) == []  # its own reads of the files are not changes

        funnel = tree / "funnels" / "reference.yaml"
        text = funnel.read_text(encoding="utf-8")
        save(funnel, text.replace("mql: 40", "mql: 25", 1))
        got = w.until_ready()
        moved = [line for line in got if line.startswith("moved  funnels/reference.yaml:")]
        assert moved and "reached mql" in moved[0] and "→" in moved[0], got

        # Half a file, as an editor flushing in two writes leaves it for a moment.
        funnel.write_text(text[: len(text) // 2] + "\n  bad: [", encoding="utf-8")
        got = w.until_ready()
        assert any(line.startswith("new    ") and "funnels/reference.yaml:" in line and "error" in line
                   for line in got), got
        assert got[-1].startswith("ready  1 definition, ")
        save(funnel, text)
        got = w.until_ready()
        assert any(line.startswith("fixed  ") for line in got) and got[-1].endswith(tuple("0123456789 ms)")), got
        assert any(line.startswith("moved  ") and "reached mql" in line for line in got), got  # back to 40

        # A burst of saves is one check, not five.
        for n in range(5):
            save(funnel, text.replace("Benchmark workload", f"Benchmark workload {n}", 1))
        got = w.until_ready()
        assert sum(line.startswith("ready") for line in got + w.quiet(1.5)) <= 2, w.seen[-8:]

        # A template, in its own folder, is watched too.
        day0 = tree / "templates" / "reference" / "nurture" / "day-0.j2"
        template = day0.read_text(encoding="utf-8")
        save(day0, template.replace("{% block subject %}", "{% block subject %}{% if %}", 1))
        got = w.until_ready()
        assert any(line.startswith("new    ") and "day-0.j2" in line for line in got), got
        save(day0, template)
        assert any(line.startswith("fixed  ") for line in w.until_ready())

        # Renamed, then deleted: the definition is gone, and the watch goes on.
        moved_to = funnel.with_name("renamed.yaml")
        os.replace(funnel, moved_to)
        got = w.until_ready()
        assert "gone   funnels/reference.yaml" in got and "added  funnels/renamed.yaml" in got, got
        moved_to.unlink()
        got = w.until_ready()
        assert "gone   funnels/renamed.yaml" in got and got[-1].startswith("ready  0 definitions"), got
        save(funnel, text)
        assert "added  funnels/reference.yaml" in w.until_ready()
    finally:
        code = w.stop()
    assert code == 0, w.seen[-5:]
    assert not any("Traceback" in line for line in w.seen), w.seen
