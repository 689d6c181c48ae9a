"""The data-quality limits, read from one documented file: musicvae/quality/data_quality.toml."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from musicvae.core.errors import ConfigurationError

DEFAULT_FILE = Path(__file__).with_name("data_quality.toml")
ENV_VAR = "MUSICVAE_DATA_QUALITY_CONFIG"


@dataclass(frozen=True)
class Thresholds:
    """Every limit of merge_validate; see data_quality.toml for what each one means."""

    min_duration_s: float
    max_duration_s: float
    min_sample_rate: int
    silence_dbfs: float
    max_clipped_fraction: float
    max_edge_silence_s: float
    min_lyrics_words: int
    max_lyrics_chars: int
    max_garbage_ratio: float
    required_columns: tuple[str, ...]
    min_genre_rate: float
    max_valid_fraction_drop: float
    min_tracks_for_collapse: int
    subset_rows: dict[str, int]
    max_psi: float
    max_ks_pvalue: float
    psi_bins: int
    min_drift_tracks: int
    ood_quantile: float
    max_ood_share: float
    max_ood_pvalue: float


# (section, key in the file) for each field whose file name differs from the field name.
_KEYS = {
    "min_lyrics_words": ("lyrics", "min_words"),
    "max_lyrics_chars": ("lyrics", "max_chars"),
    "max_garbage_ratio": ("lyrics", "max_garbage_ratio"),
    "min_drift_tracks": ("drift", "min_tracks"),
}
_SECTIONS = {
    "audio": (
        "min_duration_s",
        "max_duration_s",
        "min_sample_rate",
        "silence_dbfs",
        "max_clipped_fraction",
        "max_edge_silence_s",
    ),
    "metadata": ("required_columns", "min_genre_rate"),
    "batch": ("max_valid_fraction_drop", "min_tracks_for_collapse"),
    "drift": (
        "max_psi",
        "max_ks_pvalue",
        "psi_bins",
        "ood_quantile",
        "max_ood_share",
        "max_ood_pvalue",
    ),
}


def load(path: str | Path | None = None) -> Thresholds:
    """The thresholds in `path`, else in $MUSICVAE_DATA_QUALITY_CONFIG, else the packaged file."""
    path = Path(path or os.environ.get(ENV_VAR) or DEFAULT_FILE)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigurationError(
            f"cannot read the data-quality thresholds from {path}: {e}; "
            f"copy {DEFAULT_FILE} and edit it"
        ) from e
    where = {name: (section, name) for section, names in _SECTIONS.items() for name in names}
    where.update(_KEYS)
    values: dict = {"subset_rows": dict(doc.get("subset_rows", {}))}
    types = {f.name: f.type for f in fields(Thresholds)}
    for name, (section, key) in where.items():
        try:
            value = doc[section][key]
        except KeyError:
            raise ConfigurationError(
                f"{path}: [{section}] {key} is missing; every threshold must be set "
                f"(see {DEFAULT_FILE})"
            ) from None
        values[name] = tuple(value) if types[name].startswith("tuple") else value
    return Thresholds(**values)
