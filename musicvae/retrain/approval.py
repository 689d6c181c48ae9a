"""A person's approval before a new model version becomes champion: Airflow's Human-in-the-loop
operator, asked only when the run wants it (`require_approval`) and the automatic gate passed.

The request shows the gate's scores and links the evaluation report; the reviewer approves or
rejects, with a reason. No answer within `approval_timeout_hours` answers Reject. Imported by
the retrain DAG only (it needs Airflow).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param

APPROVE, REJECT = "Approve", "Reject"
# The reviewer's form, besides the two buttons; not the DAG's Params (those are the retrain's).
REVIEW_FORM = {
    "reason": Param(
        None, type=["null", "string"], description="Why (optional); recorded with the decision."
    ),
}


class ChampionApproval(HITLOperator):
    """Asks whether the version the gate passed (`decision`, the gate task's result) may become
    champion; returns the answer for `promotion.with_review`, or {"asked": False}."""

    template_fields = (*HITLOperator.template_fields, "decision")

    def __init__(self, *, decision: Any, **kwargs) -> None:
        super().__init__(
            subject="Promote a new model version?",
            options=[APPROVE, REJECT],
            defaults=[REJECT],  # what a timeout answers
            multiple=False,
            **kwargs,
        )
        self.decision = decision

    @property
    def serialized_params(self) -> dict[str, dict[str, Any]]:
        return {name: param.serialize() for name, param in REVIEW_FORM.items()}

    def execute(self, context):
        params = context["params"]
        if not (params["require_approval"] and self.decision["promoted"]):
            return {"asked": False}
        hours = params["approval_timeout_hours"]
        self.response_timeout = timedelta(hours=hours)
        self.subject = f"Promote model version {self.decision['version']} to champion?"
        self.body = request_body(self.decision, hours)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> dict:
        answer = super().execute_complete(context, event)
        return {
            **answer,
            "responded_at": answer["responded_at"].isoformat(),
            "asked": True,
            "timeout_hours": context["params"]["approval_timeout_hours"],
        }


def request_body(decision: dict, hours: float) -> str:
    """What the reviewer reads (Markdown): the gate's verdict and scores, and where to look."""
    version = decision["version"]
    lines = [f"The automatic gate passed model version {version}: {decision['reason']}.", ""]
    if scores := decision.get("scores"):
        lines += [
            f"| held-back {decision['label_set']} NMI | score |",
            "|---|---|",
            f"| candidate, version {version} | {scores['candidate']:.4f} |",
            f"| champion, version {decision['champion_before']} | {scores['champion']:.4f} |",
            "",
        ]
    lines += [
        f"Evaluation report: [/musicvae/models/{version}/](/musicvae/models/{version}/).",
        "",
        f"Approve makes it champion and reclusters the catalogue. Reject, or no answer within "
        f"{hours:g} h, keeps the champion.",
    ]
    return "\n".join(lines)
