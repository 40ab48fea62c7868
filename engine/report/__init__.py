"""Reporters: one module per output format, chosen by name.

Each reporter turns a list of checked definitions into text. They never decide exit
codes and never read files.
"""
from __future__ import annotations

from typing import Callable, Dict, List

from ..check import Checked
from . import github, json_, sarif, text

Reporter = Callable[[List[Checked], bool], str]

REPORTERS: Dict[str, Reporter] = {
    "text": text.render,
    "json": json_.render,
    "github": github.render,
    "sarif": sarif.render,
}
