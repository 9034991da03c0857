"""The shipped translations: every catalogue compiles, translates every message it lists (no
fuzzy and no empty entry), keeps each message's placeholders, and its committed .mo is the
compiled .po (no one edited one without the other)."""

from __future__ import annotations

import ast
import gettext
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

LOCALE = Path(settings.BASE_DIR) / "cpo" / "locale"
TRANSLATED = [code for code, _name in settings.LANGUAGES if code != "en"]
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]|\{\{ *\w+ *\}\}")


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)


def po_entries(path: Path) -> list[Entry]:
    """The entries of a .po file: flags, msgid, msgid_plural and msgstr(s)."""
    entries: list[Entry] = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        entry = Entry()
        current = ""  # what a continued string ("...") adds to: msgid, msgid_plural or msgstr[n]
        for line in block.splitlines():
            if line.startswith("#,"):
                entry.flags = {flag.strip() for flag in line[2:].split(",")}
            elif line.startswith("#") or not line.strip():
                continue
            else:
                word, _, rest = (
                    line.partition(" ") if not line.startswith('"') else (current, "", line)
                )
                value = ast.literal_eval(rest)
                current = word
                if word == "msgid":
                    entry.msgid += value
                elif word == "msgid_plural":
                    entry.msgid_plural = (entry.msgid_plural or "") + value
                else:
                    index = int(word[7:-1]) if word.startswith("msgstr[") else 0
                    entry.msgstr[index] = entry.msgstr.get(index, "") + value
        if entry.msgid or entry.msgstr:
            entries.append(entry)
    return entries


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated_and_compiled(language: str) -> None:
    po = LOCALE / language / "LC_MESSAGES" / "django.po"
    mo = po.with_suffix(".mo")
    entries = [e for e in po_entries(po) if e.msgid]
    assert len(entries) > 100, "the catalogue lost its messages"
    catalog = gettext.GNUTranslations(mo.open("rb"))
    problems = []
    for entry in entries:
        msgid, strings = entry.msgid, entry.msgstr
        if "fuzzy" in entry.flags:
            problems.append(f"fuzzy: {msgid}")
        if not strings or not all(strings.values()):
            problems.append(f"untranslated: {msgid}")
            continue
        for translated in strings.values():
            if sorted(PLACEHOLDER.findall(translated)) != sorted(PLACEHOLDER.findall(msgid)):
                problems.append(f"placeholders differ: {msgid} -> {translated}")
        if entry.msgid_plural is not None:
            got = catalog.ngettext(msgid, entry.msgid_plural, 1)
        else:
            got = catalog.gettext(msgid)
        if got != strings[0]:
            problems.append(f".mo is not the compiled .po: {msgid}")
    assert problems == []
    header = po.read_text(encoding="utf-8").split("\n\n", 1)[0]
    assert f'"Language: {language}\\n"' in header
    assert "fuzzy" not in header


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext's msgfmt not installed")
@pytest.mark.parametrize("language", TRANSLATED)
def test_msgfmt_accepts_the_catalogue(language: str, tmp_path: Path) -> None:
    po = LOCALE / language / "LC_MESSAGES" / "django.po"
    result = subprocess.run(
        ["msgfmt", "--check", "-o", str(tmp_path / "django.mo"), str(po)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
