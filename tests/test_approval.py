"""The approval's logic around Airflow's Human-in-the-loop operator: what the reviewer reads, and
what each answer makes of the gate's decision. Through Airflow: test_e2e.py, test_browser.py."""

from musicvae.retrain.approval import request_body
from musicvae.retrain.promotion import with_review

PASSED = {
    "version": 3,
    "promoted": True,
    "champion_before": 2,
    "margin": 0.01,
    "label_set": "genre",
    "scores": {"candidate": 0.4123, "champion": 0.3981},
    "reason": "promoted: genre NMI on 40 held-back tracks 0.4123 (v3) vs 0.3981 (champion v2)",
}
ANSWER = {"responded_at": "2026-12-01T10:00:00+00:00", "asked": True, "timeout_hours": 72.0}
ADMIN = {"id": "admin", "name": "admin"}


def test_the_request_shows_both_scores_and_links_the_evaluation_report():
    body = request_body(PASSED, 72.0)
    assert "| candidate, version 3 | 0.4123 |" in body
    assert "| champion, version 2 | 0.3981 |" in body
    assert "(/musicvae/models/3/)" in body and "within 72 h" in body


def test_the_first_version_has_no_scores_to_show():
    first = {"version": 1, "promoted": True, "reason": "first model version: no champion"}
    assert "|" not in request_body(first, 1.5) and "within 1.5 h" in request_body(first, 1.5)


def test_an_approval_keeps_the_gate_decision_and_names_the_reviewer():
    review = {**ANSWER, "chosen_options": ["Approve"], "responded_by_user": ADMIN}
    decision = with_review(PASSED, review)
    assert decision["promoted"] and decision["reason"].endswith("; approved by admin")
    assert decision["approval"] == {
        "approved": True,
        "by": "admin",
        "at": ANSWER["responded_at"],
        "reason": None,
    }
    assert decision["scores"] == PASSED["scores"]


def test_a_rejection_keeps_the_champion_with_the_reviewer_and_reason():
    review = {
        **ANSWER,
        "chosen_options": ["Reject"],
        "params_input": {"reason": "the quadrant NMI fell"},
        "responded_by_user": ADMIN,
    }
    decision = with_review(PASSED, review)
    assert not decision["promoted"]
    assert decision["reason"] == "kept the champion: rejected by admin: the quadrant NMI fell"
    assert decision["approval"]["by"] == "admin"
    assert decision["approval"]["reason"] == "the quadrant NMI fell"


def test_no_answer_in_time_is_a_rejection_by_nobody():
    review = {**ANSWER, "chosen_options": ["Reject"], "responded_by_user": None}
    decision = with_review(PASSED, review)
    assert not decision["promoted"] and decision["approval"]["by"] is None
    assert decision["reason"] == "kept the champion: no approval within 72 h"


def test_a_decision_nobody_was_asked_about_is_unchanged():
    assert with_review(PASSED, {"asked": False}) == PASSED
    kept = {**PASSED, "promoted": False, "reason": "kept the champion: lower NMI"}
    assert with_review(kept, {"asked": False}) == kept
