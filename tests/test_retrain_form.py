"""One definition of the retrain's parameters for the DAG's form and for `musicvae retrain`."""

import pytest

from musicvae.cli import build_parser
from musicvae.core.errors import ConfigurationError
from musicvae.retrain.form import AIRFLOW_ONLY, RETRAIN_FORM, resolve
from musicvae.retrain.steps import RetrainParams


def test_the_form_defaults_are_the_training_defaults():
    assert RetrainParams.from_dict(resolve({})) == RetrainParams()
    assert set(RETRAIN_FORM) - {"promotion_margin", "dry_run", *AIRFLOW_ONLY} == set(
        RetrainParams.__dataclass_fields__
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 0}, "epochs: 0 is less than the minimum of 1"),
        ({"beta": -1}, "beta: -1 is less than the minimum of 0"),
        ({"batch_size": "many"}, "batch_size: 'many' is not of type 'integer'"),
        ({"audio_frontend": "vgg"}, "audio_frontend: 'vgg' is not one of"),
        ({"learning_rate": 0.0}, "learning_rate: 0.0 is less than or equal to the minimum"),
        ({"epoch": 3}, r"unknown retrain parameter\(s\) \['epoch'\]"),
    ],
)
def test_values_the_form_refuses_are_refused_with_their_reason(values, message):
    with pytest.raises(ConfigurationError, match=message):
        resolve(values)


def test_every_problem_is_named_at_once():
    with pytest.raises(ConfigurationError, match="epochs: .*; seed: "):
        resolve({"epochs": 0, "seed": -1})


def test_the_command_line_offers_every_form_field():
    args = build_parser().parse_args(
        ["retrain", "--epochs", "3", "--audio-frontend", "mel", "--dry-run", "--beta", "0.5"]
    )
    offered = set(RETRAIN_FORM) - set(AIRFLOW_ONLY)
    given = {name: getattr(args, name) for name in offered if getattr(args, name) is not None}
    assert given == {"epochs": 3, "audio_frontend": "mel", "dry_run": True, "beta": 0.5}
    assert resolve(given)["latent_dim"] == RETRAIN_FORM["latent_dim"]["default"]
    # Approval is a person in the Airflow UI; at the terminal, that person is the one typing.
    for name in AIRFLOW_ONLY:
        assert not hasattr(args, name)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["retrain", "--require-approval"])


def test_approval_defaults_come_from_the_deployment_environment(monkeypatch):
    import importlib

    import musicvae.retrain.form as form

    try:
        monkeypatch.setenv("MUSICVAE_REQUIRE_APPROVAL", "true")
        monkeypatch.setenv("MUSICVAE_APPROVAL_TIMEOUT_HOURS", "0.5")
        importlib.reload(form)
        assert form.resolve({})["require_approval"] is True
        assert form.resolve({})["approval_timeout_hours"] == 0.5
        monkeypatch.setenv("MUSICVAE_APPROVAL_TIMEOUT_HOURS", "soon")
        with pytest.raises(ConfigurationError, match="MUSICVAE_APPROVAL_TIMEOUT_HOURS='soon'"):
            importlib.reload(form)
    finally:
        monkeypatch.delenv("MUSICVAE_REQUIRE_APPROVAL")
        monkeypatch.delenv("MUSICVAE_APPROVAL_TIMEOUT_HOURS")
        importlib.reload(form)
    assert form.resolve({})["require_approval"] is False
