"""The extension's checks build their messages without a stream, read from the sources, so that it
holds for every toolchain, built or not (see [NOTE: messages without iostreams] in csrc/message.h)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parent.parent / "csrc"
SOURCES = sorted(p for p in CSRC.rglob("*") if p.suffix in (".h", ".cpp", ".cu", ".cuh"))
CODE_WITHOUT_COMMENTS = {p: re.sub(r"//[^\n]*", "", p.read_text()) for p in SOURCES}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(CSRC)))
def test_no_check_formats_through_a_stream(path):
    code = CODE_WITHOUT_COMMENTS[path]
    banned = (r"\bTORCH_CHECK\w*\(", r"\bTORCH_INTERNAL_ASSERT\w*\(", r"\bc10::str\(", r"\bAT_ERROR\(",
              r"#include <(sstream|iostream|ostream)>", r"std::(o|i)?stringstream", r"std::(cout|cerr|clog)\b")
    for pattern in banned:  # see [NOTE: messages without iostreams] in csrc/message.h
        assert not re.search(pattern, code), f"{path.name}: {pattern}"


def test_every_check_message_is_a_literal_or_a_message_call():
    checks = 0
    for path, code in CODE_WITHOUT_COMMENTS.items():
        for m in re.finditer(r"\bLOOKAHEAD_CHECK(?:_VALUE|_NOT_IMPLEMENTED)?\(", code):
            depth, i = 1, m.end()
            while depth:  # to the call's closing parenthesis, skipping string literals
                if code[i] == '"':
                    i = code.index('"', i + 1)
                    while code[i - 1] == "\\":
                        i = code.index('"', i + 1)
                depth += {"(": 1, ")": -1}.get(code[i], 0)
                i += 1
            if path.name == "message.h":
                continue  # the macros' own definitions
            checks += 1
            call = code[m.end() : i - 1]
            text = call[_top_level_comma(call) + 1 :].strip()
            assert text.startswith(('"', "message(")), f"{path.name}: a check whose message is {text[:60]!r}"
    assert checks > 50


def _top_level_comma(call: str) -> int:
    depth, i = 0, 0
    while i < len(call):
        c = call[i]
        if c == '"':
            i = call.index('"', i + 1)
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            return i
        i += 1
    raise AssertionError(f"a check without a message: {call[:60]!r}")
