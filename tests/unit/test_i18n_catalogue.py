"""The shipped zh_Hans catalogue: complete (makemessages finds no string it lacks), every
entry translated, placeholders kept, and the compiled .mo in step with the .po.

A new string in the code fails ``test_makemessages_finds_nothing_new`` until ``make
messages`` has added it to the catalogue and someone has translated it.
"""

from __future__ import annotations

import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.po_files import APP_LOCALE, ZH_HANS_PO, Entry, read_po

APP_DIR = APP_LOCALE.parent
ZH_HANS_MO = ZH_HANS_PO.with_suffix(".mo")
PLACEHOLDER = re.compile(r"%\(\w+\)[sdgr]|%[sdgr]|\{\w*\}")


def needs(*programs: str) -> None:
    missing = [program for program in programs if shutil.which(program) is None]
    if missing:
        pytest.skip(f"GNU gettext missing ({', '.join(missing)}): apt-get install gettext")


@pytest.fixture(scope="module")
def shipped() -> list[Entry]:
    return read_po(ZH_HANS_PO)


def test_every_entry_is_translated(shipped: list[Entry]) -> None:
    assert len(shipped) > 500  # the catalogue read is the real one
    untranslated = [entry.msgid for entry in shipped if not entry.translated]
    assert untranslated == [], "empty or fuzzy msgstr in the zh_Hans catalogue"


def test_placeholders_are_kept(shipped: list[Entry]) -> None:
    """Each msgstr has the placeholders of its msgid (and msgid_plural: Chinese has one form
    for both), no more, no fewer (msgfmt checks %-formats only by order and type)."""
    changed = [
        (entry.msgid, text)
        for entry in shipped
        for text in entry.msgstr.values()
        if set(PLACEHOLDER.findall(text))
        != set(PLACEHOLDER.findall(entry.msgid + " " + (entry.msgid_plural or "")))
    ]
    assert changed == []


def test_header_says_chinese_with_one_plural_form() -> None:
    header = ZH_HANS_PO.read_text(encoding="utf-8").split("\n\n", 1)[0]
    assert '"Language: zh_Hans\\n"' in header
    assert '"Plural-Forms: nplurals=1; plural=0;\\n"' in header
    assert "#, fuzzy" not in header  # msgfmt would leave the header (and plural rule) out


def test_the_compiled_catalogue_is_the_shipped_one(shipped: list[Entry]) -> None:
    """The .mo Django reads says what the .po says (make, or tests/conftest.py, compiles it
    whenever the .po is newer)."""
    assert ZH_HANS_MO.exists(), f"not compiled: make {ZH_HANS_MO.relative_to(APP_DIR.parent)}"
    with ZH_HANS_MO.open("rb") as file:
        compiled = gettext.GNUTranslations(file)
    stale = [
        entry.msgid
        for entry in shipped
        if (
            compiled.ngettext(entry.msgid, entry.msgid_plural, 1)
            if entry.msgid_plural
            else compiled.gettext(entry.msgid)
        )
        != entry.msgstr[0]
    ]
    assert stale == [], "the .mo is older than the .po: run make (or msgfmt) again"


def test_makemessages_finds_nothing_new(shipped: list[Entry], tmp_path: Path) -> None:
    """makemessages, run on a copy of the app, finds exactly the shipped msgids and leaves
    nothing to translate."""
    needs("xgettext", "msguniq", "msgmerge", "msgattrib")
    copy = tmp_path / "imagen_assets"
    shutil.copytree(APP_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    # The options of `make messages`.
    command = ["makemessages", "--locale", "zh_Hans", "--add-location", "file"]
    result = subprocess.run(
        [sys.executable, "-m", "django", *command],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    # xgettext's own warnings (e.g. one msgid used with and without a plural) are bugs too.
    assert "warning" not in result.stderr.lower(), result.stderr
    fresh = read_po(copy / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po")
    new = sorted({e.key for e in fresh} - {e.key for e in shipped}, key=str)
    gone = sorted({e.key for e in shipped} - {e.key for e in fresh}, key=str)
    changed = sorted(e.msgid for e in fresh if not e.translated)  # new, or a plural added
    assert (new, gone, changed) == ([], [], []), (
        "the zh_Hans catalogue is not what the code says: run `make messages`, translate "
        "every empty or fuzzy msgstr, and commit the .po\n"
        f"new: {new}\nno longer in the code: {gone}\nto translate: {changed}"
    )
