"""A reader for gettext .po files, enough for the app's catalogues (the tests read them to
know every string of the app; no dependency for it).

Reads what ``makemessages`` writes: comments, flags (``#, fuzzy``), ``msgctxt``, ``msgid``,
``msgid_plural``, ``msgstr`` / ``msgstr[n]``, strings continued over several lines, and skips
obsolete entries (``#~``).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

APP_LOCALE = Path(__file__).resolve().parent.parent / "imagen_assets" / "locale"
ZH_HANS_PO = APP_LOCALE / "zh_Hans" / "LC_MESSAGES" / "django.po"

KEYWORD = re.compile(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)\s+(\".*\")\s*$")


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    references: list[str] = field(default_factory=list)

    @property
    def fuzzy(self) -> bool:
        return "fuzzy" in self.flags

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and all(self.msgstr.values()) and not self.fuzzy

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.msgctxt, self.msgid)


def unquote(literal: str) -> str:
    # A .po string is a C string; as a Python literal it reads the same for what xgettext writes.
    value = ast.literal_eval(literal)
    assert isinstance(value, str)
    return value


def read_po(path: Path) -> list[Entry]:
    """The entries of a .po file, header (``msgid ""``) left out."""
    entries: list[Entry] = []
    entry = Entry()
    started = False
    last: str | None = None

    def finish() -> None:
        nonlocal entry, started, last
        if started and entry.msgid:
            entries.append(entry)
        entry, started, last = Entry(), False, None

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            finish()
        elif line.startswith("#~"):
            continue
        elif line.startswith("#,"):
            if started and last is not None and last.startswith("msgstr"):
                finish()
            entry.flags.update(flag.strip() for flag in line[2:].split(","))
        elif line.startswith("#:"):
            entry.references.extend(line[2:].split())
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            if last is None:
                raise ValueError(f"{path}: a continued string with nothing before it: {raw!r}")
            text = unquote(line)
            if last == "msgid":
                entry.msgid += text
            elif last == "msgid_plural":
                entry.msgid_plural = (entry.msgid_plural or "") + text
            elif last == "msgctxt":
                entry.msgctxt = (entry.msgctxt or "") + text
            else:
                index = int(last[7:-1]) if "[" in last else 0
                entry.msgstr[index] += text
        else:
            match = KEYWORD.match(line)
            if not match:
                raise ValueError(f"{path}: cannot read {raw!r}")
            keyword, literal = match.groups()
            if keyword in ("msgctxt", "msgid") and last is not None and last.startswith("msgstr"):
                finish()
            started = True
            text = unquote(literal)
            if keyword == "msgid":
                entry.msgid = text
            elif keyword == "msgid_plural":
                entry.msgid_plural = text
            elif keyword == "msgctxt":
                entry.msgctxt = text
            else:
                index = int(keyword[7:-1]) if "[" in keyword else 0
                entry.msgstr[index] = text
            last = keyword
    finish()
    return entries
