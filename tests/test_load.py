"""The strict YAML loader: what it refuses, exactly where it says so, and how fast.

Every hostile input is written to a real file and read with `load_file`, the same call
`fnl validate` makes. Each test pins the problem code, line and column (1-based), and
that no exception escapes.
"""
from __future__ import annotations

import time
import tracemalloc
import unicodedata
from pathlib import Path
from typing import Iterable, Set, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yaml.scanner import ScannerError

import engine.load
from conftest import run_fnl, write
from engine.errors import Location
from engine.load import MAX_BYTES, Loaded, PurePythonParser, decode, load_file, parse_text

FAST = 2.0  # seconds; every hostile file is rejected well within this


def load(tmp_path: Path, content, name: str = "f.yaml") -> Loaded:
    """Write `content` to a real file, load it, and check the invariants every load keeps."""
    path = write(tmp_path, name, content)
    start = time.process_time()
    loaded = load_file(path, name)
    elapsed = time.process_time() - start
    assert elapsed < FAST, f"loading took {elapsed:.2f}s"
    for p in loaded.problems:
        assert p.message.strip(), p
        assert p.help.strip(), p
        assert p.location.file == name
        assert p.location.line >= 1 and p.location.column >= 1, p
    return loaded


def found(loaded: Loaded) -> Set[Tuple[str, int, int]]:
    return {(p.code, p.location.line, p.location.column) for p in loaded.problems}


def only(loaded: Loaded, code: str, line: int, column: int):
    """Assert exactly one problem, at that place, and return it."""
    assert found(loaded) == {(code, line, column)}, [(p.code, p.location, p.message) for p in loaded.problems]
    assert len(loaded.problems) == 1
    return loaded.problems[0]


# -- duplicate keys ------------------------------------------------------------------

def test_duplicate_key_is_reported_at_the_second_key(tmp_path):
    loaded = load(tmp_path, "a: 1\nb: 2\na: 3\n")
    p = only(loaded, "FNL016", 3, 1)
    assert "duplicate key `a`" in p.message and "line 1" in p.message
    assert "remove or rename" in p.help


def test_duplicate_nested_key(tmp_path):
    loaded = load(tmp_path, "outer:\n  x: 1\n  y: 2\n  x: 3\n")
    p = only(loaded, "FNL016", 4, 3)
    assert p.path == ("outer", "x")


@pytest.mark.parametrize("second", ["a\u200b", "\u200ba", "a\u2060", "a\ufeff", "a\u00ad"],
                         ids=["zwsp-after", "zwsp-before", "word-joiner", "bom", "soft-hyphen"])
def test_duplicate_key_differing_by_an_invisible_character(tmp_path, second):
    loaded = load(tmp_path, f"a: 1\n{second}: 2\n")
    p = only(loaded, "FNL016", 2, 1)
    assert "invisible" in p.message


@pytest.mark.parametrize("first,second", [
    ("caf\u00e9", "cafe\u0301"),      # NFC vs NFD
    ("\uff41", "a"),                  # fullwidth a (NFKC)
    ("\ufb01le", "file"),             # the fi ligature (NFKC)
], ids=["nfc-nfd", "fullwidth", "ligature"])
def test_duplicate_key_differing_by_unicode_normalisation(tmp_path, first, second):
    assert first != second and unicodedata.normalize("NFKC", first) == unicodedata.normalize("NFKC", second)
    loaded = load(tmp_path, f"{first}: 1\n{second}: 2\n")
    p = only(loaded, "FNL016", 2, 1)
    assert "duplicate key" in p.message


def test_normalisation_duplicate_message_does_not_blame_invisible_characters(tmp_path):
    loaded = load(tmp_path, "caf\u00e9: 1\ncafe\u0301: 2\n")
    p = only(loaded, "FNL016", 2, 1)
    assert "invisible" not in p.message


def test_invisible_character_in_a_single_key(tmp_path):
    loaded = load(tmp_path, "fnl: 1\nfun\u200bnel: acme\n")
    p = only(loaded, "FNL017", 2, 1)
    assert "U+200B" in p.message and "funnel" in p.message


def test_different_keys_are_not_duplicates(tmp_path):
    loaded = load(tmp_path, "a: 1\nA: 2\na_: 3\n")
    assert loaded.problems == ()
    assert loaded.document.data == {"a": 1, "A": 2, "a_": 3}


# -- anchors, aliases, tags ----------------------------------------------------------

def test_anchor_rejected(tmp_path):
    p = only(load(tmp_path, "a: &x 1\nb: 2\n"), "FNL013", 1, 4)
    assert "anchor `&x`" in p.message


def test_alias_rejected(tmp_path):
    loaded = load(tmp_path, "a: &x 1\nb: *x\n")
    assert found(loaded) == {("FNL013", 1, 4), ("FNL013", 2, 4)}
    assert any("alias `*x`" in p.message for p in loaded.problems)
    # The alias is not resolved to the anchored value.
    assert loaded.document.data["b"] != 1


def test_merge_key_alias_rejected(tmp_path):
    loaded = load(tmp_path, "base: &b {x: 1}\nother:\n  <<: *b\n")
    assert ("FNL013", 1, 7) in found(loaded)
    assert ("FNL013", 3, 7) in found(loaded)


def test_billion_laughs_is_rejected_fast_without_expansion(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghi"
    for prev, cur in zip(names, names[1:]):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = "\n".join(lines) + "\n"
    start = time.process_time()
    loaded = load(tmp_path, text)
    assert time.process_time() - start < 0.5
    expected = {("FNL013", n, 4) for n in range(1, 10)}  # one anchor per line
    expected |= {("FNL013", n, 8 + 3 * k) for n in range(2, 10) for k in range(9)}  # nine aliases per line
    assert found(loaded) == expected
    # Nothing was expanded: 9**9 strings would not fit in memory.
    assert len(repr(loaded.document.data)) < 2000


@pytest.mark.parametrize("text,col,shown", [
    ("a: !!str 12\n", 4, "tag:yaml.org,2002:str"),
    ("a: !!binary aGk=\n", 4, "binary"),
    ("a: !foo bar\n", 4, "!foo"),
    ("a: ! bar\n", 4, "`!`"),
    ("a: !!python/object:os.system ls\n", 4, "python/object"),
], ids=["str", "binary", "custom", "non-specific", "python"])
def test_tags_rejected(tmp_path, text, col, shown):
    p = only(load(tmp_path, text), "FNL013", 1, col)
    assert shown in p.message


def test_tag_on_a_collection(tmp_path):
    only(load(tmp_path, "!!map {a: 1}\n"), "FNL013", 1, 1)
    only(load(tmp_path, "a: !!seq [1]\n", "g.yaml"), "FNL013", 1, 4)


# -- documents and encodings ---------------------------------------------------------

def test_multi_document_stream_rejected(tmp_path):
    loaded = load(tmp_path, "a: 1\n---\nb: 2\n")
    p = only(loaded, "FNL003", 2, 1)
    assert "more than one" in p.message
    assert loaded.document is None


def test_explicit_single_document_markers_are_fine(tmp_path):
    for i, text in enumerate(["---\na: 1\n", "a: 1\n...\n", "%YAML 1.2\n---\na: 1\n"]):
        loaded = load(tmp_path, text, f"d{i}.yaml")
        assert loaded.problems == ()
        assert loaded.document.data == {"a": 1}


@pytest.mark.parametrize("raw", [
    "fnl: 1\n".encode("utf-16"),
    "fnl: 1\n".encode("utf-16-le").join([b"\xff\xfe", b""]),
    b"\xfe\xff" + "fnl: 1\n".encode("utf-16-be"),
    "fnl: 1\n".encode("utf-32"),
], ids=["utf-16", "utf-16-le-bom", "utf-16-be-bom", "utf-32"])
def test_utf16_and_utf32_rejected(tmp_path, raw):
    p = only(load(tmp_path, raw), "FNL001", 1, 1)
    assert "UTF-16" in p.message
    assert "UTF-8" in p.help


def test_utf16_without_bom_is_still_rejected(tmp_path):
    loaded = load(tmp_path, "fnl: 1\n".encode("utf-16-le"))
    assert [p.code for p in loaded.problems] == ["FNL001"]
    assert loaded.document is None


@pytest.mark.parametrize("raw,line,col,byte", [
    (b"a: 1\nb: caf\xe9\n", 2, 7, "0xe9"),
    (b"\xff\n", 1, 1, "0xff"),
    (b"a: \xc3\xa9\xc3\n", 1, 5, "0xc3"),            # truncated sequence after a valid one
    (b"a: 1\nb: 2\nc: \xed\xa0\x80\n", 3, 4, "0xed"),  # an encoded surrogate
], ids=["latin1", "first-byte", "truncated", "surrogate"])
def test_invalid_utf8_rejected_at_the_bad_byte(tmp_path, raw, line, col, byte):
    p = only(load(tmp_path, raw), "FNL001", line, col)
    assert "UTF-8" in p.message and byte in p.message


def test_utf8_bom_is_accepted_and_positions_ignore_it(tmp_path):
    loaded = load(tmp_path, b"\xef\xbb\xbffnl: 1\nname: x\n")
    assert loaded.problems == ()
    assert loaded.document.data == {"fnl": 1, "name": "x"}
    assert loaded.document.keys[("fnl",)] == Location("f.yaml", 1, 1)
    assert loaded.document.values[("fnl",)] == Location("f.yaml", 1, 6)


@pytest.mark.parametrize("raw,line,col", [
    (b"a: 1\nb: x\x00y\n", 2, 5),
    (b"\x00", 1, 1),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 3, 1),
    (b"\x7fELF\x02\x01\x01\x00", 1, 8),
], ids=["nul-in-value", "single-nul", "png", "elf"])
def test_binary_files_rejected(tmp_path, raw, line, col):
    p = only(load(tmp_path, raw), "FNL001", line, col)
    assert "binary" in p.message


@pytest.mark.parametrize("raw", [b"", b"\n\n", b"   \n\t\n", b"# only a comment\n", b"# one\n\n# two\n"],
                         ids=["empty", "newlines", "blank", "comment", "comments"])
def test_empty_and_comment_only_files(tmp_path, raw):
    loaded = load(tmp_path, raw)
    p = only(loaded, "FNL004", 1, 1)
    assert "empty" in p.message
    assert "fnl: 1" in p.help
    assert loaded.document is None


# -- scalars -------------------------------------------------------------------------

YAML11_BOOLEANS = ["yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
                   "y", "Y", "n", "N", "yEs", "oFf"]


@pytest.mark.parametrize("word", YAML11_BOOLEANS)
def test_yaml11_booleans_rejected(tmp_path, word):
    loaded = load(tmp_path, f"flag: {word}\n")
    p = only(loaded, "FNL010", 1, 7)
    assert f"`{word}`" in p.message
    meaning = "true" if word.lower() in ("yes", "on", "y") else "false"
    assert f"boolean {meaning}" in p.message
    assert f'"{word}"' in p.help  # the quoted spelling is the fix


def test_yaml11_boolean_inside_a_flow_list(tmp_path):
    only(load(tmp_path, "a: [x, no, z]\n"), "FNL010", 1, 8)


@pytest.mark.parametrize("value,code", [
    ("1:30", "FNL011"), ("20:00", "FNL011"), ("190:20:30", "FNL011"),
    ("012", "FNL011"), ("-012", "FNL011"), ("00", "FNL011"),
    ("0x1F", "FNL011"), ("0o17", "FNL011"), ("0b101", "FNL011"), ("1_000", "FNL011"), ("1_000.5", "FNL011"),
    ("1e400", "FNL012"), ("-1e400", "FNL012"), ("1" + "0" * 400 + ".0", "FNL012"),
    (".inf", "FNL012"), ("-.inf", "FNL012"), ("+.Inf", "FNL012"), (".nan", "FNL012"), (".NaN", "FNL012"),
    ("9223372036854775808", "FNL012"), ("-9223372036854775809", "FNL012"), ("1" * 5000, "FNL012"),
])
def test_ambiguous_and_out_of_range_scalars_rejected(tmp_path, value, code):
    loaded = load(tmp_path, f"v: {value}\n")
    p = only(loaded, code, 1, 4)
    if code == "FNL011":
        assert f'"{value}"' in p.help  # quoting is always offered as the fix


def test_sexagesimal_help_says_quote_it(tmp_path):
    p = only(load(tmp_path, "at: 20:00\n"), "FNL011", 1, 5)
    assert "base-60" in p.message
    assert p.help == 'quote it: "20:00"'


def test_leading_zero_help_names_the_octal_reading(tmp_path):
    p = only(load(tmp_path, "n: 012\n"), "FNL011", 1, 4)
    assert "octal" in p.message and "(10)" in p.message


def test_largest_int64_is_accepted(tmp_path):
    loaded = load(tmp_path, "a: 9223372036854775807\nb: -9223372036854775807\n")
    assert loaded.problems == ()
    assert loaded.document.data == {"a": 2**63 - 1, "b": -(2**63 - 1)}


def test_smallest_int64_is_accepted(tmp_path):
    loaded = load(tmp_path, "a: -9223372036854775808\n")
    assert loaded.problems == ()
    assert loaded.document.data == {"a": -(2**63)}


def test_numbers_that_are_fine(tmp_path):
    loaded = load(tmp_path, "a: 0\nb: -7\nc: 0.5\nd: 1e3\ne: 1.5e-3\nf: +3\ng: .5\n")
    assert loaded.problems == ()
    assert loaded.document.data == {"a": 0, "b": -7, "c": 0.5, "d": 1000.0, "e": 0.0015, "f": 3, "g": 0.5}
    assert isinstance(loaded.document.data["a"], int) and isinstance(loaded.document.data["d"], float)


def test_quoted_scalars_stay_strings(tmp_path):
    text = ("a: '012'\nb: \"no\"\nc: \"20:00\"\nd: 'yes'\ne: \"0x1F\"\nf: '1e400'\ng: \".inf\"\n"
            "h: 'true'\ni: \"null\"\nj: |\n  012\nk: >-\n  no\n")
    loaded = load(tmp_path, text)
    assert loaded.problems == ()
    assert loaded.document.data == {"a": "012", "b": "no", "c": "20:00", "d": "yes", "e": "0x1F", "f": "1e400",
                                    "g": ".inf", "h": "true", "i": "null", "j": "012\n", "k": "no"}


def test_core_schema_booleans_and_nulls_resolve(tmp_path):
    text = "a: true\nb: false\nc: null\nd: ~\ne:\nf: True\ng: FALSE\nh: Null\ni: [true, ~]\n"
    loaded = load(tmp_path, text)
    assert loaded.problems == ()
    assert loaded.document.data == {"a": True, "b": False, "c": None, "d": None, "e": None, "f": True,
                                    "g": False, "h": None, "i": [True, None]}
    assert loaded.document.data["a"] is True and loaded.document.data["b"] is False


def test_ambiguous_scalars_leave_a_usable_document(tmp_path):
    """One bad value does not hide the rest: the document is still built."""
    loaded = load(tmp_path, "a: yes\nb: 012\nc: fine\n")
    assert found(loaded) == {("FNL010", 1, 4), ("FNL011", 2, 4)}
    assert loaded.document is not None and loaded.document.data["c"] == "fine"


# -- bounds --------------------------------------------------------------------------

class NestingLimitedParser(PurePythonParser):
    """A parser with a nesting limit of its own, met while it reads ahead of the events it
    has handed out, and its own wording: like the libyaml in recent PyYAML wheels (1,000
    levels), but nearer fnl's 64. fnl's bounds must not depend on the limit or its message."""

    LIMIT = 100

    def fetch_flow_collection_start(self, TokenClass):  # noqa: N803 - PyYAML's name
        if self.flow_level >= self.LIMIT:
            raise ScannerError("while opening a bracket", None, "too deep for this parser", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column):
        if len(self.indents) >= self.LIMIT:
            raise ScannerError("while indenting", None, "too deep for this parser", self.get_mark())
        return super().add_indent(column)


PARSERS = {
    "installed": engine.load._Parser,  # what pip picked: libyaml where PyYAML's wheel has it
    "pure-python": PurePythonParser,   # PyYAML built without libyaml
    "limit-100": NestingLimitedParser,
}


@pytest.fixture(params=sorted(PARSERS))
def parser(request, monkeypatch):
    """Each bound test runs with every kind of parser fnl may get from PyYAML."""
    monkeypatch.setattr(engine.load, "_Parser", PARSERS[request.param])
    return request.param


def test_deep_block_nesting_rejected(tmp_path, parser):
    text = "".join("  " * i + f"k{i}:\n" for i in range(80)) + "  " * 80 + "leaf\n"
    loaded = load(tmp_path, text)
    # Key k63 is the first node deeper than 64 levels: line 64, after 63 two-space indents.
    p = only(loaded, "FNL014", 64, 127)
    assert "deeper than 64" in p.message
    assert loaded.document is None


def test_nesting_of_exactly_64_is_allowed(tmp_path, parser):
    loaded = load(tmp_path, "[" * 64 + "]" * 64 + "\n")
    assert loaded.problems == ()


def test_block_nesting_of_exactly_64_is_allowed(tmp_path, parser):
    loaded = load(tmp_path, "- " * 63 + "x\n")  # 63 sequences and the scalar in the innermost
    assert loaded.problems == ()
    assert loaded.document is not None


@pytest.mark.parametrize("text,line,col", [
    ("- " * 64 + "x\n", 1, 129),                                     # the scalar is the 65th level
    ("- " * 2000 + "x\n", 1, 129),                                   # past libyaml's 1,000 levels
    # One more level a line, 1,200 lines (past libyaml's 1,000 levels) in under 1 MiB.
    ("".join(" " * i + "-\n" for i in range(1200)) + " " * 1200 + "x\n", 65, 65),
    ("".join(" " * i + f"k{i}:\n" for i in range(1200)) + " " * 1200 + "leaf\n", 64, 64),
    # A sequence holding a mapping on each line: the key `a` on line n is at level 2n + 1.
    ("".join("  " * i + "- a:\n" for i in range(600)), 32, 65),
    ("- " * 40 + "[" * 40 + "\n", 1, 105),                           # block then flow: the 25th bracket
    ("- " * 10 + "{a: " * 1000 + "\n", 1, 234),                      # the key inside the 54th mapping
], ids=["dashes-65", "dashes-2000", "dash-lines-1200", "mappings-1200", "sequence-mappings", "dashes-brackets",
        "dashes-flow-mappings"])
def test_deep_block_nesting_rejected_where_it_crosses(tmp_path, parser, text, line, col):
    loaded = load(tmp_path, text)
    p = only(loaded, "FNL014", line, col)
    assert "deeper than 64" in p.message
    assert loaded.document is None


@pytest.mark.parametrize("text,col", [
    ("a: " + "[" * 70 + "]" * 70 + "\n", 67),
    ("[" * 65 + "]" * 65, 65),
    ("a: " + "[" * 200_000 + "\n", 67),          # never closed: still rejected by depth first
    ("a: " + "[" * 2000 + "]" * 2000 + "\n", 67),  # closed, and past libyaml's 1,000 levels
    ("a: " + "{b: " * 100 + "1" + "}" * 100, 5 + 4 * 62),  # the key inside the 63rd mapping
    ("[" * 70 + " @", 65),                         # the parser reads ahead to a bad character...
    ("[" * 70 + " 'never closed", 65),             # ...or to the end of the file in a quote
], ids=["flow-70", "flow-65", "flow-200k-unclosed", "flow-2000", "flow-mappings", "then-bad-character",
        "then-unclosed-quote"])
def test_deep_flow_nesting_rejected_quickly(tmp_path, parser, text, col):
    start = time.process_time()  # CPU time: a busy machine (a parallel test run) does not decide it
    loaded = load(tmp_path, text)
    assert time.process_time() - start < 0.5
    only(loaded, "FNL014", 1, col)


def test_syntax_error_before_the_nesting_bound_is_reported_as_such(tmp_path, parser):
    loaded = load(tmp_path, "a: [ @ " + "[" * 2000 + "\n")
    p = only(loaded, "FNL002", 1, 6)
    assert p.source_line.startswith("a: [ @")


def test_file_over_one_mebibyte_rejected_without_reading_it(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.truncate(64 * MAX_BYTES)  # 64 MiB, sparse: cheap to make, costly to read
    tracemalloc.start()
    start = time.process_time()
    try:
        loaded = load_file(path, "huge.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.process_time() - start < 0.5
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes: the file was read"
    p = only(loaded, "FNL005", 1, 1)
    assert "1 MiB" in p.message and p.help


def test_file_just_over_the_bound(tmp_path):
    raw = b"a: '" + b"x" * MAX_BYTES + b"'\n"
    only(load(tmp_path, raw), "FNL005", 1, 1)


def test_file_exactly_at_the_bound_is_read(tmp_path):
    raw = b"a: '" + b"x" * (MAX_BYTES - 6) + b"'\n"
    assert len(raw) == MAX_BYTES
    loaded = load(tmp_path, raw)
    assert loaded.problems == ()
    assert len(loaded.document.data["a"]) == MAX_BYTES - 6


def test_endless_stream_is_cut_at_the_bound():
    """A device is never read (it could be endless or block): one clear problem, at once."""
    dev = Path("/dev/zero")
    if not dev.exists():
        pytest.skip("no /dev/zero on this system")
    start = time.process_time()
    loaded = load_file(dev, "zero")
    assert time.process_time() - start < FAST
    assert [p.code for p in loaded.problems] == ["FNL006"]
    assert "pipe, device or socket" in loaded.problems[0].message


def test_more_than_100000_values_rejected(tmp_path):
    text = "a: [" + ",".join(["1"] * 100_001) + "]\n"
    loaded = load(tmp_path, text)
    # Root mapping, key, list: item k is value number k + 4; item 99,997 starts at column 5 + 2 * 99,997.
    p = only(loaded, "FNL014", 1, 199_999)
    assert "100,000" in p.message
    assert loaded.document is None


def test_100000_values_are_allowed(tmp_path):
    text = "a: [" + ",".join(["1"] * 99_997) + "]\n"  # exactly 100,000 values with the root, key and list
    loaded = load(tmp_path, text)
    assert loaded.problems == ()
    assert len(loaded.document.data["a"]) == 99_997


def test_many_mapping_entries_rejected(tmp_path):
    text = "".join(f"k{i}: {i}\n" for i in range(60_000))
    loaded = load(tmp_path, text)
    # Each line is two values (key and value); the root is one more.
    only(loaded, "FNL014", 50_000, 9)


# -- syntax errors -------------------------------------------------------------------

@pytest.mark.parametrize("text,line,col,help_word", [
    ("a:\n\tb: 1\n", 2, 1, "tab"),
    ("a: 1\n\tb: 2\n", 2, 1, "tab"),
    ("a:\n  b: 1\n c: 2\n", 3, 2, "indentation"),
    ("a: b: c\n", 1, 5, "quote"),
    ("a: 1\nb\n", 2, 2, "colon"),
    ("key: @bad\n", 1, 6, "quote"),
    ("key: `bad\n", 1, 6, "quote"),
    ("a: [1, 2\n", 1, 4, "not closed"),
    ("{a: 1", 1, 1, "not closed"),
    ("a:\n  - b\n  c: 1\n", 3, 3, "indentation"),
], ids=["tab-indent", "tab-second-line", "bad-indent", "colon-in-value", "missing-colon", "at-sign",
        "backtick", "unclosed-flow-list", "unclosed-flow-map", "list-then-map"])
def test_syntax_errors_are_located_with_help(tmp_path, text, line, col, help_word):
    loaded = load(tmp_path, text)
    p = only(loaded, "FNL002", line, col)
    assert p.message.startswith("YAML syntax error")
    assert help_word in p.help
    assert loaded.document is None


# A key indented wrongly is reported on its own line, at its first character, as an
# indentation mistake with the column to align it with (not as "quote the whole value").
@pytest.mark.parametrize("text,line,col,what,fix", [
    ("fnl: 1\nsender:\n  from: x\n    postal_address: y\n", 4, 5,
     "indented more than the key above it expects: `postal_address` is indented 4 spaces, "
     "`from` on line 3 is indented 2 spaces", "align it with `from` (2 spaces)"),
    ("fnl: 1\n funnel: acme\n", 2, 2, "`funnel` is indented 1 space, `fnl` on line 1 is not indented",
     "align it with `fnl` (no indentation)"),
    ("funnel:\n  acme\n  sender: x\n", 3, 3, "indented more than the key above it expects",
     "align it with `funnel` (no indentation)"),
    ("steps:\n  - send: a\n      wait: 2d\n", 3, 7, "`wait` is indented 6 spaces, `send` on line 2",
     "align it with `send` (4 spaces)"),
    ('sender:\n  from: "x"\n    postal_address: y\n', 3, 5, "indented more than the key above it expects",
     "align it with `from` (2 spaces)"),
    ("sender: {from: x}\n  stages: [a]\n", 2, 3, "indented more than the key above it expects",
     "align it with `sender` (no indentation)"),
    ("fnl: 1\nsender:\n    from: x\n  postal_address: y\n", 4, 3,
     "indented less than the key above it expects: `postal_address` is indented 2 spaces, "
     "`from` on line 3 is indented 4 spaces",
     "align it with `from` (4 spaces) to put it beside `from`, or with `sender` on line 2 (no indentation)"),
    ("sequences:\n  nurture:\n    stage: subscriber\n\n    # the steps\n   steps: []\n", 6, 4,
     "`steps` is indented 3 spaces, `stage` on line 3 is indented 4 spaces",
     "or with `nurture` on line 2 (2 spaces)"),
    ("sender:\n  from: x\n\tpostal_address: y\n", 3, 1, "this line is indented with a tab",
     "replace the tab with spaces (`from` on line 2 is indented 2 spaces)"),
    ("sender:\n  from: x\n  \tpostal_address: y\n", 3, 3, "indented with a tab", "replace the tab with spaces"),
    ("sender:\n\tfrom: x\n", 2, 1, "indented with a tab", "`sender` on line 1 is not indented"),
], ids=["over-indented-key", "over-indented-top-level", "value-on-next-line", "over-indented-in-list-item",
        "over-after-quoted-value", "over-after-flow-mapping", "under-indented-key", "under-after-a-comment",
        "tab-indent", "spaces-then-tab", "tab-for-a-child"])
def test_indentation_mistakes_point_at_the_misindented_line(tmp_path, parser, text, line, col, what, fix):
    loaded = load(tmp_path, text)
    p = only(loaded, "FNL002", line, col)
    assert p.message.startswith("YAML syntax error: this line is indented"), p.message
    assert what in p.message, p.message
    assert fix in p.help, p.help
    assert "quote the whole value" not in p.help
    assert p.source_line == text.splitlines()[line - 1]


@pytest.mark.parametrize("text,line,col", [
    ("fnl: 1\ndescription: Note: this is it\n", 2, 18),
    ("steps:\n  - send: a: b\n", 2, 12),
    ("consent: I agree to receive\n  email from Acme: weekly\n", 2, 18),
], ids=["colon-in-value", "colon-in-list-item", "colon-in-continued-value"])
def test_a_colon_inside_an_unquoted_value_still_says_quote_it(tmp_path, parser, text, line, col):
    p = only(load(tmp_path, text), "FNL002", line, col)
    assert "mapping values are not allowed" in p.message
    assert p.help == "a value contains `: `; quote the whole value"


# A list item indented wrongly is compared with the items of its list, not with the keys
# inside them: `- {wait: 5d, …}` under `- {wait: 3d, …}` is one list, whatever the
# braces hold.
@pytest.mark.parametrize("text,line,col,what,fix", [
    ("sequences:\n  nurture:\n    steps:\n      - {wait: 3d, send: nurture/a}\n"
     "        - {wait: 5d, send: webinar/follow-up}\n", 5, 9,
     "this line is indented more than the list items above it: `- {wait: 5d, send: webinar/follow-up}` is "
     "indented 8 spaces, `- {wait: 3d, send: nurture/a}` on line 4 is indented 6 spaces",
     "align its `-` with the `-` on line 4 (6 spaces) to make it the next item of that list"),
    ("steps:\n  - send: a\n    wait: 2d\n    - send: b\n", 4, 5,
     "`- send` is indented 4 spaces, `- send` on line 2 is indented 2 spaces",
     "align its `-` with the `-` on line 2 (2 spaces) to make it the next item of that list"),
    ("steps:\n  - wait: 3d\n    send: a\n      - {wait: 5d, send: b}\n", 4, 7,
     "`- {wait: 5d, send: b}` is indented 6 spaces, `- wait` on line 2 is indented 2 spaces",
     "align its `-` with the `-` on line 2 (2 spaces)"),
    ("steps:\n  - send: a\n    wait: 2d\n   - send: b\n", 4, 4,
     "indented more than the list items above it: `- send` is indented 3 spaces, `- send` on line 2 is "
     "indented 2 spaces", "align its `-` with the `-` on line 2 (2 spaces)"),
    ("a:\n  - x:\n      - 1\n      - 2\n   - y\n", 5, 4,
     "indented less than the list items above it: `- y` is indented 3 spaces, `- 2` on line 4 is indented 6 spaces",
     "align its `-` with the `-` on line 4 (6 spaces) to make it the next item of that list, or with the `-` "
     "on line 2 (2 spaces) to make it the next item of the outer list"),
], ids=["over-indented-flow-item", "over-indented-block-item", "item-under-a-key", "item-between-levels",
        "item-between-two-lists"])
def test_a_misindented_list_item_is_compared_with_the_items_above(tmp_path, parser, text, line, col, what, fix):
    p = only(load(tmp_path, text), "FNL002", line, col)
    assert p.message.startswith("YAML syntax error: this line is indented"), p.message
    assert what in p.message, p.message
    assert fix in p.help, p.help
    assert p.source_line == text.splitlines()[line - 1]


def test_an_over_indented_line_that_may_continue_a_value_offers_both_fixes(tmp_path, parser):
    p = only(load(tmp_path, "description: The long\n  note: here\n"), "FNL002", 2, 3)
    assert "indented more than the key above it expects" in p.message
    assert p.help == ("align it with `description` (no indentation) to put it beside `description`; "
                      "if it continues the value of `description`, quote that whole value")


def test_indentation_is_reported_by_fnl_validate(tmp_path):
    path = write(tmp_path, "f.yaml", "fnl: 1\nsender:\n  from: x\n    postal_address: y\n")
    result = run_fnl("validate", path)
    assert result.returncode == 1
    assert ":4:5: error FNL002: YAML syntax error: this line is indented more than the key above it expects" \
        in result.stdout
    assert "    4 |     postal_address: y\n      |     ^\n" in result.stdout


@pytest.mark.parametrize("quote", ['"', "'"])
def test_unclosed_quote_is_a_syntax_error(tmp_path, quote):
    loaded = load(tmp_path, f"a: {quote}abc\n")
    assert [p.code for p in loaded.problems] == ["FNL002"]
    assert "quoted scalar" in loaded.problems[0].message
    assert loaded.problems[0].help


def test_unclosed_quote_points_at_the_opening_quote(tmp_path):
    loaded = load(tmp_path, 'a: "abc\nb: 1\nc: 2\nd: 3\n')
    only(loaded, "FNL002", 1, 4)


@pytest.mark.parametrize("text,col", [("a: b\x07c\n", 5), ("a: \x1b[31m\n", 4)], ids=["bell", "escape"])
def test_control_character_is_located_with_the_right_help(tmp_path, text, col):
    loaded = load(tmp_path, text)
    p = only(loaded, "FNL002", 1, col)
    assert "tab" not in p.help
    assert "<unicode string>" not in p.message


def test_control_character_is_a_syntax_error_not_a_crash(tmp_path):
    loaded = load(tmp_path, "a: b\x07c\n")
    assert [p.code for p in loaded.problems] == ["FNL002"]
    assert loaded.document is None


def test_non_scalar_mapping_key_rejected(tmp_path):
    loaded = load(tmp_path, "? [a, b]\n: 1\nc: 2\n")
    assert ("FNL015", 1, 3) in found(loaded)


# -- positions -----------------------------------------------------------------------

def test_positions_of_keys_and_values_are_one_based(tmp_path):
    text = ("fnl: 1\n"
            "sender:\n"
            "  from: \"a@b.example\"\n"
            "stages: [subscriber, mql]\n"
            "steps:\n"
            "  - send: x\n"
            "    wait: 2d\n"
            "  - {send: y}\n")
    doc = load(tmp_path, text).document
    loc = lambda line, col: Location("f.yaml", line, col)  # noqa: E731
    assert doc.values[()] == loc(1, 1)
    assert doc.keys[("fnl",)] == loc(1, 1)
    assert doc.values[("fnl",)] == loc(1, 6)
    assert doc.keys[("sender",)] == loc(2, 1)
    assert doc.values[("sender",)] == loc(3, 3)
    assert doc.keys[("sender", "from")] == loc(3, 3)
    assert doc.values[("sender", "from")] == loc(3, 9)
    assert doc.values[("stages",)] == loc(4, 9)
    assert doc.values[("stages", 0)] == loc(4, 10)
    assert doc.values[("stages", 1)] == loc(4, 22)
    assert doc.values[("steps", 0)] == loc(6, 5)
    assert doc.keys[("steps", 0, "wait")] == loc(7, 5)
    assert doc.values[("steps", 0, "wait")] == loc(7, 11)
    assert doc.values[("steps", 1)] == loc(8, 5)
    assert doc.keys[("steps", 1, "send")] == loc(8, 6)
    assert doc.values[("steps", 1, "send")] == loc(8, 12)


def test_locate_falls_back_to_the_nearest_ancestor(tmp_path):
    doc = load(tmp_path, "a:\n  b: 1\n").document
    assert doc.locate(("a", "b", "missing")) == Location("f.yaml", 2, 6)
    assert doc.locate(("a", "b"), key=True) == Location("f.yaml", 2, 3)
    assert doc.locate(("nope",)) == Location("f.yaml", 1, 1)
    assert doc.source_line(Location("f.yaml", 2, 1)) == "  b: 1"


def test_unicode_before_a_value_counts_characters_not_bytes(tmp_path):
    doc = load(tmp_path, "é: x\nb: [ü, v]\n").document
    assert doc.values[("é",)] == Location("f.yaml", 1, 4)
    assert doc.values[("b", 1)] == Location("f.yaml", 2, 8)


def test_crlf_line_endings_keep_positions(tmp_path):
    loaded = load(tmp_path, b"a: 1\r\nb: yes\r\n")
    only(loaded, "FNL010", 2, 4)
    assert loaded.document.source_line(Location("f.yaml", 2, 4)) == "b: yes"


# -- no input makes it raise ---------------------------------------------------------

def _assert_result(loaded: Loaded) -> None:
    assert isinstance(loaded, Loaded)
    assert loaded.document is not None or loaded.problems
    for p in loaded.problems:
        assert p.message and p.location.line >= 1 and p.location.column >= 1


YAMLISH = st.lists(st.sampled_from(
    list(":-[]{}&*!|>'\"#%@`?, \n\t.0a") + ["yes", "1:30", "---", "...", "\ufeff", "\u200b", "\x85", "\u2028",
                                           "\r", "  ", "key: ", "- ", "!!str", "&a ", "*a", "\x00", "\x07"]),
    max_size=60).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text() | YAMLISH)
def test_arbitrary_text_never_raises(text):
    _assert_result(parse_text("fuzz.yaml", text))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary() | YAMLISH.map(lambda s: s.encode("utf-8")))
def test_arbitrary_bytes_never_raise(raw):
    text, problem = decode("fuzz.yaml", raw)
    assert (text is None) != (problem is None)
    if problem is not None:
        assert problem.code == "FNL001"
        assert problem.location.line >= 1 and problem.location.column >= 1
        return
    _assert_result(parse_text("fuzz.yaml", text))


# -- the CLI on every hostile file at once -------------------------------------------

HOSTILE = {
    "dup.yaml": b"a: 1\na: 2\n",
    "bomb.yaml": b'a: &a ["lol","lol"]\nb: &b [*a,*a,*a]\nc: [*b,*b,*b]\n',
    "tag.yaml": b"a: !foo bar\n",
    "multi.yaml": b"a: 1\n---\nb: 2\n",
    "utf16.yaml": "a: 1\n".encode("utf-16"),
    "latin1.yaml": b"a: caf\xe9\n",
    "binary.yaml": b"\x00\x01\x02",
    "empty.yaml": b"",
    "comment.yaml": b"# nothing\n",
    "yes.yaml": b"a: yes\n",
    "deep.yaml": b"[" * 100 + b"]" * 100,
    "tab.yaml": b"a:\n\tb: 1\n",
    "huge.yaml": b"a: '" + b"x" * (MAX_BYTES + 1) + b"'\n",
    "many.yaml": b"a: [" + b",".join([b"1"] * 100_001) + b"]\n",
}


def test_cli_reports_every_hostile_file_without_a_traceback(tmp_path):
    for name, raw in HOSTILE.items():
        write(tmp_path, name, raw)
    start = time.process_time()
    result = run_fnl("validate", tmp_path)
    assert time.process_time() - start < 20
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    assert result.returncode == 1, out
    for name in HOSTILE:
        assert f"{name}:" in result.stdout, f"{name} not reported"
    assert f"in {len(HOSTILE)} of {len(HOSTILE)} definitions" in result.stdout


def _codes(loaded: Loaded) -> Iterable[str]:
    return sorted({p.code for p in loaded.problems})


def test_each_hostile_file_alone(tmp_path):
    expected = {
        "dup.yaml": ["FNL016"], "bomb.yaml": ["FNL013"], "tag.yaml": ["FNL013"], "multi.yaml": ["FNL003"],
        "utf16.yaml": ["FNL001"], "latin1.yaml": ["FNL001"], "binary.yaml": ["FNL001"], "empty.yaml": ["FNL004"],
        "comment.yaml": ["FNL004"], "yes.yaml": ["FNL010"], "deep.yaml": ["FNL014"], "tab.yaml": ["FNL002"],
        "huge.yaml": ["FNL005"], "many.yaml": ["FNL014"],
    }
    assert set(expected) == set(HOSTILE)
    for name, raw in HOSTILE.items():
        assert list(_codes(load(tmp_path, raw, name))) == expected[name], name


def test_times_with_a_leading_zero_are_strings_everywhere(tmp_path):
    """`08:00` is a string to YAML 1.1 (base 60 needs a leading 1-9) and 1.2 alike."""
    loaded = load(tmp_path, "to: 08:00\nat: 09:30\n")
    assert loaded.problems == ()
    assert loaded.document.data == {"to": "08:00", "at": "09:30"}
