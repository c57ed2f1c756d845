"""Where the prose quotes a setting's default ("`TIME_MARGIN_SECONDS` (90 s)"), it is config.py's default."""

from __future__ import annotations

import re
from pathlib import Path

from donation_processor.config import SETTINGS, DaysSetting, FloatSetting, IntSetting, Setting

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BY_NAME: dict[str, Setting] = {setting.env: setting for setting in SETTINGS}
NAMES = "|".join(BY_NAME)
# `NAME` (90 s)   `NAME`, 120 s   `NAME = 4`   `NAME = 1,3,7`
QUOTE = re.compile(rf"`({NAMES})`(?: \(|, )(\d[\d.]*)|`({NAMES}) = ([\d.,]+)`")
GENERATED_TABLE = re.compile(r"<!-- settings:start -->.*?<!-- settings:end -->", re.DOTALL)


def quotes() -> list[tuple[str, str, str]]:
    found = []
    for document in DOCUMENTS:
        text = GENERATED_TABLE.sub("", document.read_text(encoding="utf-8"))
        for match in QUOTE.finditer(text):
            name = match.group(1) or match.group(3)
            found.append((document.name, name, match.group(2) or match.group(4)))
    return found


def _is_default(setting: Setting, quoted: str) -> bool:
    if isinstance(setting, DaysSetting):
        return quoted == setting.text()
    if isinstance(setting, (IntSetting, FloatSetting)):
        return float(quoted.rstrip(".,")) == setting.default
    return False


def test_the_prose_quotes_some_defaults() -> None:
    # GIVEN the README and the docs
    # WHEN the defaults they quote are collected
    # THEN there are several, so the check below checks something
    assert len(quotes()) >= 5


def test_every_default_the_prose_quotes_is_config_py_default() -> None:
    # GIVEN every place the prose quotes a setting's value next to its name
    # WHEN each value is compared with config.py's default
    wrong = [
        (document, name, quoted)
        for document, name, quoted in quotes()
        if not _is_default(BY_NAME[name], quoted)
    ]

    # THEN none differs
    assert wrong == []
