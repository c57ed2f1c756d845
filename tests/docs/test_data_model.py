"""The README's table of host-owned fields states each fact once, and every editable field has its test."""

from __future__ import annotations

import re
from pathlib import Path

from donation_processor.validation import EDITABLE_FIELDS, HOST_OWNED_FIELDS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PINNING_TESTS = (ROOT / "tests" / "faults" / "test_host_owned_fields.py").read_text()


def _rows() -> dict[str, str]:
    block = README.split("<!-- host-fields:start -->")[1].split("<!-- host-fields:end -->")[0]
    rows: dict[str, str] = {}
    for line in block.splitlines():
        match = re.match(r"\| `(\w+)` \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_the_readme_lists_exactly_the_host_owned_fields_of_the_code() -> None:
    # GIVEN the README's host-field table and the engine's list of host-owned fields
    # WHEN the rows are read
    rows = _rows()

    # THEN they are the same fields, in the same order
    assert list(rows) == list(HOST_OWNED_FIELDS)


def test_the_readme_marks_exactly_the_editable_fields_of_the_code() -> None:
    rows = _rows()
    editable = [name for name, text in rows.items() if "*editable*" in text]
    assert editable == list(EDITABLE_FIELDS)


def test_every_editable_field_is_edited_by_a_pinning_test() -> None:
    # GIVEN the tests that pin the table's rows
    # WHEN each editable field is looked for among the edits they make
    missing = [field for field in EDITABLE_FIELDS if not re.search(rf'\b{field}=|\("{field}"', PINNING_TESTS)]

    # THEN none is missing: each row's behaviour is proven by a test
    assert missing == []
