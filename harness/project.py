"""Where the project lives on disk, for the harness's files that read or write the repository."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
