"""Which code made a model version or a lineage event; light, so any process may ask."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

from musicvae import __version__


@cache
def code_version() -> str:
    """The git commit this code came from (MUSICVAE_CODE_VERSION in images built without .git)."""
    if os.environ.get("MUSICVAE_CODE_VERSION"):
        return os.environ["MUSICVAE_CODE_VERSION"]
    repo = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.CalledProcessError):
        return f"musicvae-{__version__}"
