"""fnl's cache folder: what it works out once and keeps between commands.

Two things live there, each named by a hash of everything that went into it, so a stale
entry is never read (it is simply not asked for): the compiled schema validators
(`validate._fast_check`) and the compiled email templates (`templates.environment`).
`FNL_CACHE_DIR` moves the folder, and `off` turns the cache off; a folder fnl cannot
write to, or a damaged entry, only means compiling again.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def cache_dir() -> Optional[Path]:
    """Where fnl keeps what it works out once (`FNL_CACHE_DIR`, else the user's cache
    folder); None when `FNL_CACHE_DIR` is `off`."""
    given = os.environ.get("FNL_CACHE_DIR")
    if given is not None:
        return None if given.strip().lower() in ("", "off", "0", "none") else Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fnl"
