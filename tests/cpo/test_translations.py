"""The shipped translations: every catalogue compiles, translates every message it lists (no
fuzzy and no empty entry), keeps each message's placeholders, and its committed .mo is the
compiled .po (no one edited one without the other)."""

from __future__ import annotations

import ast
import gettext
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

LOCALE = Path(settings.BASE_DIR) / "locale"
TRANSLATED = [code for code, _name in settings.LANGUAGES if code != "en"]
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]|\{\{ *\w+ *\}\}")


def po_entries(path: Path) -> list[dict[str, object]]:
    """The entries of a .po file: flags, msgid, msgid_plural and msgstr(s)."""
    entries: list[dict[str, object]] = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        entry: dict[str, object] = {"flags": set(), "msgstr": {}}
        key = None
        for line in block.splitlines():
            if line.startswith("#,"):
                entry["flags"] = {f.strip() for f in line[2:].split(",")}
            elif line.startswith("#") or not line.strip():
                continue
            elif line.startswith('"'):
                assert key is not None, line
                value = ast.literal_eval(line)
                if isinstance(key, tuple):
                    entry["msgstr"][key[1]] += value  # type: ignore[index]
                else:
                    entry[key] += value  # type: ignore[operator]
            else:
                word, _, rest = line.partition(" ")
                value = ast.literal_eval(rest)
                if word.startswith("msgstr["):
                    key = ("msgstr", int(word[7:-1]))
                    entry["msgstr"][key[1]] = value  # type: ignore[index]
                elif word == "msgstr":
                    key = ("msgstr", 0)
                    entry["msgstr"][0] = value  # type: ignore[index]
                else:
                    key = word
                    entry[word] = value
        if "msgid" in entry:
            entries.append(entry)
    return entries


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated_and_compiled(language: str) -> None:
    po = LOCALE / language / "LC_MESSAGES" / "django.po"
    mo = po.with_suffix(".mo")
    entries = [e for e in po_entries(po) if e["msgid"]]
    assert len(entries) > 100, "the catalogue lost its messages"
    catalog = gettext.GNUTranslations(mo.open("rb"))
    problems = []
    for entry in entries:
        msgid = str(entry["msgid"])
        strings: dict[int, str] = entry["msgstr"]  # type: ignore[assignment]
        if "fuzzy" in entry["flags"]:  # type: ignore[operator]
            problems.append(f"fuzzy: {msgid}")
        if not strings or not all(strings.values()):
            problems.append(f"untranslated: {msgid}")
            continue
        for translated in strings.values():
            if sorted(PLACEHOLDER.findall(translated)) != sorted(PLACEHOLDER.findall(msgid)):
                problems.append(f"placeholders differ: {msgid} -> {translated}")
        if "msgid_plural" in entry:
            got = catalog.ngettext(msgid, str(entry["msgid_plural"]), 1)
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
