"""docs/DATA_MODEL.md's host-owned fields table says each fact once; each editable field has its test."""

from __future__ import annotations

import re
from pathlib import Path

from donation_processor.validation import EDITABLE_FIELDS, HOST_OWNED_FIELDS

ROOT = Path(__file__).resolve().parents[2]
DATA_MODEL = (ROOT / "docs" / "DATA_MODEL.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
PINNING_TESTS = (ROOT / "tests" / "faults" / "test_host_owned_fields.py").read_text(encoding="utf-8")


def _rows() -> dict[str, str]:
    block = DATA_MODEL.split("<!-- host-fields:start -->")[1].split("<!-- host-fields:end -->")[0]
    rows: dict[str, str] = {}
    for line in block.splitlines():
        match = re.match(r"\| `(\w+)` \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_the_data_model_lists_exactly_the_host_owned_fields_of_the_code() -> None:
    # GIVEN the data model's host-field table and the engine's list of host-owned fields
    # WHEN the rows are read
    rows = _rows()

    # THEN they are the same fields, in the same order
    assert list(rows) == list(HOST_OWNED_FIELDS)


def test_the_data_model_marks_exactly_the_editable_fields_of_the_code() -> None:
    # GIVEN the rows of the host-field table
    rows = _rows()

    # WHEN the rows marked editable are picked out
    editable = [name for name, text in rows.items() if "*editable*" in text]

    # THEN they are the engine's editable fields, in the same order
    assert editable == list(EDITABLE_FIELDS)


def test_the_host_field_table_is_written_once() -> None:
    # GIVEN the README and the data model
    # WHEN the table's markers are counted in each
    # THEN the table lives in the data model only; the README links to it
    assert DATA_MODEL.count("<!-- host-fields:start -->") == 1
    assert "host-fields:start" not in README
    assert "docs/DATA_MODEL.md" in README


def test_every_editable_field_is_edited_by_a_pinning_test() -> None:
    # GIVEN the tests that pin the table's rows
    # WHEN each editable field is looked for among the edits they make
    missing = [field for field in EDITABLE_FIELDS if not re.search(rf'\b{field}=|\("{field}"', PINNING_TESTS)]

    # THEN none is missing: each row's behaviour is proven by a test
    assert missing == []
