"""Notes in the code are defined once and cited by path (the team's convention): a note is defined
where a comment block or docstring begins with `[NOTE: name]`, and every other mention is
`see [NOTE: name] in PATH`, PATH being the file that defines it. Every cited note is defined."""

import collections
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFINITION = re.compile(r"^\s*(?:#|//|/?\*+|\"\"\"|''')?\s*\[NOTE: ([^\]]+)\]")
MENTION = re.compile(r"\[NOTE: ([^\]]+)\]")
CITATION = re.compile(r"[Ss]ee \[NOTE: ([^\]]+)\] in `?([\w./-]*\w)`?")
TEXT_SUFFIXES = {".py", ".cpp", ".h", ".cu", ".cuh", ".md", ".txt", ".toml", ".sh", ""}


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / name for name in listed
            if Path(name).suffix in TEXT_SUFFIXES and (ROOT / name).is_file() and ROOT / name != Path(__file__)]  # fmt: skip


def scan():
    """(definitions: name -> [(path, line)], mentions: [(path, line, text, start, name)])."""
    definitions, mentions = collections.defaultdict(list), []
    for path in tracked_text_files():
        relative = str(path.relative_to(ROOT))
        for number, text in enumerate(path.read_text(errors="replace").splitlines(), 1):
            defined = DEFINITION.match(text)
            if defined:
                definitions[defined.group(1)].append((relative, number))
            for mention in MENTION.finditer(text):
                if mention.group(1).startswith("<"):  # a placeholder, as where the convention is written down
                    continue
                if not (defined and mention.start() == text.index("[NOTE: ")):
                    mentions.append((relative, number, text, mention.start(), mention.group(1)))
    return definitions, mentions


def test_every_note_is_defined_once():
    definitions, _ = scan()
    twice = {name: places for name, places in definitions.items() if len(places) > 1}
    assert not twice, f"defined in several places (define once, cite elsewhere): {twice}"


def test_every_mention_is_a_citation_of_the_defining_file():
    definitions, mentions = scan()
    wrong = []
    for path, number, text, start, name in mentions:
        cited = {m.start(): m for m in CITATION.finditer(text)}
        citation = next((m for m in cited.values() if m.start() <= start < m.end() and m.group(1) == name), None)
        if name not in definitions:
            wrong.append(f"{path}:{number}: [NOTE: {name}] is defined nowhere")
        elif citation is None:
            wrong.append(f"{path}:{number}: cite as 'see [NOTE: {name}] in {definitions[name][0][0]}'")
        elif citation.group(2) != definitions[name][0][0]:
            wrong.append(f"{path}:{number}: [NOTE: {name}] is defined in {definitions[name][0][0]}, not {citation.group(2)}")
    assert not wrong, "\n".join(wrong)


def test_no_note_is_split_over_two_lines():
    split = [f"{path.relative_to(ROOT)}:{n}" for path in tracked_text_files()
             for n, text in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if re.search(r"\[NOTE: [^\]]*$", text)]  # fmt: skip
    assert not split, f"a note's name broken over lines (a search for it would miss): {split}"
