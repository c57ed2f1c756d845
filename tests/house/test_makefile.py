"""`make help` lists every target, and `make clean` removes everything make and the tools it runs create."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = (ROOT / "Makefile").read_text()
MAKE = shutil.which("make") or "make"
# Written by hand, never by make: a person's copy of the sample local-invoke environment.
NOT_MADE_BY_MAKE = {"env.local.json"}
# Python writes these beside every package it imports, not only at the top.
ANYWHERE_IN_THE_TREE = {"__pycache__/", "*.pyc"}


def _phony_targets() -> set[str]:
    match = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", MAKEFILE, re.M)
    assert match, "the Makefile declares its targets .PHONY"
    return set(match.group(1).replace("\\\n", " ").split())


def _make(*args: str, cwd: Path) -> str:
    return subprocess.run(  # noqa: S603 - make, on our own Makefile
        [MAKE, "--no-print-directory", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def test_make_help_lists_every_target_with_what_it_does() -> None:
    # GIVEN the Makefile's .PHONY targets
    targets = _phony_targets()

    # WHEN make help runs
    listed = dict(
        re.match(r"make (\S+)\s+(.*)", line).groups()  # type: ignore[union-attr]
        for line in _make("help", cwd=ROOT).splitlines()
    )

    # THEN each target is listed once, with a description
    assert set(listed) == targets
    assert all(description.strip() for description in listed.values())


def _ignored_paths() -> list[tuple[str, bool]]:
    """(path to create, is a directory) for each .gitignore entry; globs get a name, nested ones a folder."""
    paths = []
    for line in (ROOT / ".gitignore").read_text().splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#") or entry in NOT_MADE_BY_MAKE:
            continue
        name = entry.rstrip("/").replace("*", "scheduled_donations")
        nested = entry in ANYWHERE_IN_THE_TREE
        paths.append((f"layers/shared/{name}" if nested else name, entry.endswith("/")))
    return paths


def test_make_clean_removes_every_ignored_path_make_creates(tmp_path: Path) -> None:
    # GIVEN a copy of the Makefile beside one of each path .gitignore names (what make and its tools create)
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "env.local.json").write_text("{}")
    made = _ignored_paths()
    for name, is_directory in made:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if is_directory:
            path.mkdir()
            (path / "inside").write_text("made by make")
        else:
            path.write_text("made by make")
    assert len(made) >= 5, made

    # WHEN make clean runs there
    _make("clean", cwd=tmp_path)

    # THEN none of them is left, and the person's own file is
    left = [name for name, _ in made if (tmp_path / name).exists()]
    assert left == []
    assert (tmp_path / "env.local.json").exists()
