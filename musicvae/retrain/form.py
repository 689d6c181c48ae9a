"""The retrain's parameters as JSON Schema: one definition for the DAG's trigger form and for
`musicvae retrain`, so both accept and refuse the same values.

Light on purpose (no numpy, no torch): the DAG processor imports it when it parses the DAG file.
`RetrainParams` (musicvae.retrain.steps) holds the same defaults; a test keeps the two in step.
"""

from __future__ import annotations

import logging
import os

from musicvae.core.errors import ConfigurationError

log = logging.getLogger("musicvae.retrain.form")


def _hours_from_env(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise ConfigurationError(f"{name}={value!r} is not a number of hours") from None


RETRAIN_FORM: dict[str, dict] = {
    "audio_frontend": {
        "default": "musicnn",
        "type": "string",
        "enum": ["musicnn", "mel"],
        "description": "What the audio expert hears: musicnn, a network pretrained on the "
        "Million Song Dataset (best on real music), or mel, log-mel images learnt from scratch.",
    },
    "epochs": {
        "default": None,
        "type": ["null", "integer"],
        "minimum": 1,
        "maximum": 500,
        "description": "Training epochs (early stopping may end sooner). Empty: the front "
        "end's default, 100 for musicnn and 20 for mel.",
    },
    "beta": {
        "default": 1.0,
        "type": "number",
        "minimum": 0.0,
        "maximum": 20.0,
        "description": "Weight of the KL term (beta-VAE).",
    },
    "latent_dim": {
        "default": 32,
        "type": "integer",
        "minimum": 2,
        "maximum": 256,
        "description": "Size of the latent space (embedding dimension).",
    },
    "learning_rate": {
        "default": 1e-3,
        "type": "number",
        "exclusiveMinimum": 0.0,
        "maximum": 0.1,
        "description": "Adam learning rate.",
    },
    "batch_size": {
        "default": 32,
        "type": "integer",
        "minimum": 2,
        "maximum": 1024,
        "description": "Tracks per training step.",
    },
    "seed": {"default": 0, "type": "integer", "minimum": 0, "description": "Random seed."},
    "n_clusters": {
        "default": 8,
        "type": "integer",
        "minimum": 2,
        "maximum": 200,
        "description": "Number of KMeans clusters for the catalogue; a musicnn model is also "
        "tuned towards this many clusters as it trains.",
    },
    "promotion_margin": {
        "default": 0.01,
        "type": "number",
        "minimum": 0.0,
        "maximum": 1.0,
        "description": "The new model replaces the champion unless its held-out genre NMI is "
        "lower than the champion's by more than this.",
    },
    "dry_run": {
        "default": False,
        "type": "boolean",
        "description": "Snapshot the valid tracks, check the parameters and compute features, "
        "but train nothing.",
    },
    "require_approval": {
        "default": os.environ.get("MUSICVAE_REQUIRE_APPROVAL", "").lower() in ("1", "true", "yes"),
        "type": "boolean",
        "description": "A person approves the new version in the Airflow UI (Browse → Required "
        "Actions) before it becomes champion, after it passes the automatic gate. Default from "
        "MUSICVAE_REQUIRE_APPROVAL.",
    },
    "approval_timeout_hours": {
        "default": _hours_from_env("MUSICVAE_APPROVAL_TIMEOUT_HOURS", 72.0),
        "type": "number",
        "exclusiveMinimum": 0.0,
        "maximum": 720.0,
        "description": "How long an approval request waits; no answer by then counts as a "
        "rejection. Default from MUSICVAE_APPROVAL_TIMEOUT_HOURS.",
    },
    "vocab_size": {
        "default": 512,
        "type": "integer",
        "minimum": 16,
        "maximum": 20000,
        "description": "Lyrics TF-IDF vocabulary size.",
    },
}


# Fields only an Airflow run has: a person at a terminal running `musicvae retrain` is the
# approver, so the command line offers neither.
AIRFLOW_ONLY = ("require_approval", "approval_timeout_hours")


def resolve(values: dict) -> dict:
    """The form's defaults overlaid with `values`, each checked against its schema as Airflow's
    Params check a trigger's conf; a ConfigurationError names every value refused."""
    import jsonschema

    unknown = sorted(set(values) - set(RETRAIN_FORM))
    if unknown:
        raise ConfigurationError(
            f"unknown retrain parameter(s) {unknown}; known: {list(RETRAIN_FORM)}"
        )
    resolved = {name: spec["default"] for name, spec in RETRAIN_FORM.items()} | values
    problems = []
    for name, value in resolved.items():
        schema = {
            k: v for k, v in RETRAIN_FORM[name].items() if k not in ("default", "description")
        }
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as e:
            problems.append(f"{name}: {e.message}")
    if problems:
        raise ConfigurationError("invalid retrain parameters: " + "; ".join(problems))
    return resolved


# The newest validation run that drifted from the current champion's training data. Once a model
# trained on that data is promoted, the drift is against an older version and the notice goes.
_LATEST_DRIFT = """
SELECT d.run_id, d.checked_at, d.drifted_features, d.ood_share, d.model_version
FROM drift_runs d JOIN model_aliases a ON a.alias = 'champion' AND a.version = d.model_version
WHERE d.drifted ORDER BY d.checked_at DESC, d.run_id DESC LIMIT 1
"""


def drift_notice(database_url: str | None) -> dict[str, dict]:
    """A form entry that says the new data drifted from what the champion learnt, or {}.

    Read each time the DAG processor parses the DAG file, so the form a user opens says it. The
    catalogue being out of reach must not break parsing: the notice is then left out.
    """
    if not database_url:
        return {}
    import sqlalchemy as sa

    engine = sa.create_engine(
        database_url, connect_args={"connect_timeout": 3, "options": "-c statement_timeout=3000"}
    )
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text(_LATEST_DRIFT)).first()
    except sa.exc.SQLAlchemyError as e:
        log.info("retrain form without a drift notice: the catalogue is out of reach (%s)", e)
        return {}
    finally:
        engine.dispose()
    if row is None:
        return {}
    found = [f"{', '.join(row.drifted_features)} moved"] if row.drifted_features else []
    if row.ood_share is not None:
        found.append(f"{row.ood_share:.0%} of its tracks are out of distribution")
    text = (
        f"Validation run {row.run_id} ({row.checked_at:%Y-%m-%d %H:%M %Z}) drifted from the "
        f"training data of the champion, model version {row.model_version}: "
        f"{'; '.join(found)}. A retrain now learns from that data."
    )
    return {
        "data_drift": {
            "default": text,
            "type": "string",
            "enum": [text],
            "title": "Data drift since the champion was trained",
            "description": "Nothing to set here: what merge_validate and catalogue_assign found "
            "(the drift_runs table; the trend on the Data quality page).",
        }
    }


def trigger_form() -> dict[str, dict]:
    """The DAG's Params: a drift notice when there is one (first, so it is seen), then the
    retrain's parameters."""
    return drift_notice(os.environ.get("MUSICVAE_DATABASE_URL")) | RETRAIN_FORM
