"""The compiled schema validator is kept in fnl's cache folder and read back from there."""
from __future__ import annotations

import marshal
from pathlib import Path

import fastjsonschema
import pytest

from conftest import REPO  # noqa: F401  (puts the repository on sys.path)
from engine import validate


def fresh(monkeypatch: pytest.MonkeyPatch, folder: str) -> None:
    monkeypatch.setenv("FNL_CACHE_DIR", folder)
    validate._fast_check.cache_clear()


def test_the_validator_is_compiled_once_then_read_from_the_cache(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fresh(monkeypatch, str(tmp_path))
    check = validate._fast_check("funnel")
    kept = list(tmp_path.glob("schema-funnel-*.marshal"))
    assert len(kept) == 1
    with pytest.raises(fastjsonschema.JsonSchemaException):
        check({"fnl": 1})
    # Read back, not compiled: compiling again would fail here.
    fresh(monkeypatch, str(tmp_path))
    monkeypatch.setattr(fastjsonschema, "compile_to_code", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    again = validate._fast_check("funnel")
    with pytest.raises(fastjsonschema.JsonSchemaException):
        again({"fnl": 1})
    validate._fast_check.cache_clear()


def test_a_damaged_or_unwritable_cache_only_means_compiling_again(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fresh(monkeypatch, str(tmp_path))
    validate._fast_check("funnel")
    (kept,) = tmp_path.glob("schema-funnel-*.marshal")
    kept.write_bytes(marshal.dumps(42))  # marshal data, but no code
    fresh(monkeypatch, str(tmp_path))
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate._fast_check("funnel")({"fnl": 1})
    kept.write_bytes(marshal.dumps(compile("raise RuntimeError('not the validator')", "x", "exec")))
    fresh(monkeypatch, str(tmp_path))
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate._fast_check("funnel")({"fnl": 1})
    kept.write_bytes(b"not marshal data")
    fresh(monkeypatch, str(tmp_path))
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate._fast_check("funnel")({"fnl": 1})
    assert kept.read_bytes() != b"not marshal data"  # made again
    blocked = tmp_path / "a-file"
    blocked.write_text("x", encoding="utf-8")
    fresh(monkeypatch, str(blocked / "below"))  # a folder under a file cannot be made
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate._fast_check("funnel")({"fnl": 1})
    fresh(monkeypatch, "off")
    assert validate.cache_dir() is None
    validate._fast_check("funnel")
    validate._fast_check.cache_clear()
