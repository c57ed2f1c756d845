"""`.local/env`: the practice stack's variables as shell `export` lines, written by local-up, read back here.

One `export NAME=value` per line (values shell-quoted), `#` comments; `source .local/env` in bash or zsh.
The variables are the function's own (what `template.yaml` sets, with the local-only MONGODB_URI,
STRIPE_SECRET_KEY and STRIPE_API_BASE filled in) plus the AWS endpoint and dummy credentials for moto, so
the `donations` CLI and the handler both read them unchanged. LOCAL_* lines are for people and the harness.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path

from harness.project import PROJECT_ROOT

LOCAL_DIR_VARIABLE = "LOCAL_DIR"
ENV_FILE_NAME = "env"


def local_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where pid files, logs and the env file live: $LOCAL_DIR, else .local/ in the project."""
    configured = (os.environ if env is None else env).get(LOCAL_DIR_VARIABLE, "").strip()
    path = Path(configured) if configured else PROJECT_ROOT / ".local"
    return path if path.is_absolute() else PROJECT_ROOT / path


def render_env_file(variables: Mapping[str, str], header: str) -> str:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
    return "\n".join(lines) + "\n"


def write_env_file(path: Path, variables: Mapping[str, str], header: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_env_file(variables, header), encoding="utf-8")
    path.chmod(0o600)


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of an env file written by write_env_file."""
    variables: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        words = shlex.split(stripped)
        if len(words) != 2 or words[0] != "export" or "=" not in words[1]:
            raise ValueError(f"{path}:{number}: expected `export NAME=value`")
        name, _, value = words[1].partition("=")
        variables[name] = value
    return variables
