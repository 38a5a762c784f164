"""Evidence and explanations for engine-kept counters (issue 14): a trail entry that read a counter shows its
value and how it is counted (function, entity, window in the payment's zone, what counts); explain() with a
store reads the store's counters without recording anything; stateless decisions are unchanged."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import pytest
from conftest import base_request, decision_json_lines

from policy_engine import PolicyEngine
from policy_engine.cli import main
from policy_engine.resources import load_schema

DECISION_SCHEMA = jsonschema.Draft202012Validator(load_schema("decision"))
QR_DAILY = "history.qr_static_daily_used_cny"
QR_DAILY_DEFINITION = {"function": "sum derived.amount_cny", "by": "payer.id", "window": "calendar day Asia/Shanghai",
                       "counts": "allowed", "where": "channel eq 'qr_static'"}


def qr(rid: str, amount: int, at: str = "14:30:00", **overrides) -> dict:
    return base_request(request_id=rid, channel="qr_static", amount__value=amount,
                        timestamp=f"2025-06-10T{at}+08:00", **overrides)


def schema_problems(decision: dict) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in DECISION_SCHEMA.iter_errors(decision)]


@pytest.fixture(params=["memory", "sqlite"])
def engine(request, tmp_path: Path):
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'state.db'}"
    engine = PolicyEngine.from_path(state=url)
    yield engine
    engine.close()


def test_a_trail_entry_shows_the_counters_value_and_how_it_is_counted(engine):
    engine.evaluate(qr("a", 450, "09:00:00"))
    decision = engine.evaluate(qr("b", 100))
    (entry,) = decision.to_dict()["trail"]
    assert entry["rule_id"] == "CMP-010"
    assert entry["evidence"][QR_DAILY] == 450
    assert entry["aggregates"] == {QR_DAILY: QR_DAILY_DEFINITION}  # only the counter, not channel or the amount
    assert schema_problems(decision.to_dict()) == []


def test_a_retry_gets_the_recorded_definitions_back(engine):
    engine.evaluate(qr("a", 450, "09:00:00"))
    first = engine.evaluate(qr("b", 100))
    again = engine.evaluate(qr("b", 100))
    assert again.to_dict()["trail"] == first.to_dict()["trail"]
    assert dict(again.trail[0].aggregates[QR_DAILY]) == QR_DAILY_DEFINITION


def test_a_stateless_decision_has_no_definitions():
    engine = PolicyEngine.from_path()
    decision = engine.evaluate(qr("a", 100) | {"history": {"qr_static_daily_used_cny": 450}}).to_dict()
    (entry,) = decision["trail"]
    assert entry["evidence"][QR_DAILY] == 450 and "aggregates" not in entry
    assert schema_problems(decision) == []


def test_explain_with_a_store_reads_its_counters_and_records_nothing(engine):
    engine.evaluate(qr("a", 450, "09:00:00"))
    before = engine.counters(qr("probe", 1))
    explanation = engine.explain(qr("b", 100), "CMP-010")
    assert explanation.decision == "deny" and explanation.fired == ("CMP-010",)
    leaf = explanation.to_dict()["rules"][0]["condition"]["children"][1]
    assert leaf["parts"][QR_DAILY] == 450
    assert leaf["aggregates"] == {QR_DAILY: QR_DAILY_DEFINITION}
    assert engine.counters(qr("probe", 1)) == before
    assert engine.evaluate(qr("b", 50)).decision.value == "allow"  # "b" was not recorded by explain


def test_explain_resolves_the_window_in_the_payments_jurisdiction_and_names_sliding_and_since_windows():
    engine = PolicyEngine.from_path(state="memory://")
    us = engine.explain(qr("us", 100, psp_country="US"), "CMP-010").to_dict()
    assert us["rules"][0]["condition"]["children"][1]["aggregates"][QR_DAILY]["window"] == \
        "calendar day America/New_York"
    windows = {path: d["window"] for rule in engine.explain(qr("cn", 100)).to_dict()["rules"]
               for leaf in _leaves(rule["condition"]) for path, d in leaf.get("aggregates", {}).items()}
    assert windows["history.payer_txn_count_1h"] == "last 1h"
    assert windows["history.p2p_amount_24h_cny"] == "last 24h"
    assert windows["history.near_threshold_count_7d"] == "last 7d"
    assert windows["history.lifetime_txn_count"] == "lifetime"
    assert windows["history.sca_exempt_count_since_sca"] == "since the last payment where auth.sca_performed eq true"


def _leaves(node: dict) -> list[dict]:
    return [node] if node["node"] == "leaf" else [leaf for c in node["children"] for leaf in _leaves(c)]


def test_explain_without_a_store_is_unchanged():
    explanation = PolicyEngine.from_path().explain(qr("a", 100) | {"history": {"qr_static_daily_used_cny": 450}},
                                                   "CMP-010").to_dict()
    assert all("aggregates" not in leaf for leaf in _leaves(explanation["rules"][0]["condition"]))


def test_cli_explain_state_shows_the_stores_counter_and_its_window(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    payments = tmp_path / "payments.jsonl"
    payments.write_text(json.dumps(qr("a", 450, "09:00:00")) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert main(["evaluate", "--json", "--state", url, str(payments)], out=out, err=io.StringIO()) == 0
    assert decision_json_lines(out.getvalue())[0]["decision"] == "allow"
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps(qr("b", 100)), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert main(["explain", "--state", url, "--rule", "CMP-010", str(probe)], out=out, err=err) == 0, err.getvalue()
    text = out.getvalue()
    assert "b: deny" in text and "history.qr_static_daily_used_cny 450" in text
    assert ("history.qr_static_daily_used_cny = sum derived.amount_cny by payer.id, calendar day Asia/Shanghai "
            "where channel eq 'qr_static', counts allowed") in text
    # explain recorded nothing: evaluating "b" now is a new payment, not a retry
    payments.write_text(json.dumps(qr("b", 50)) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert main(["evaluate", "--json", "--state", url, str(payments)], out=out, err=io.StringIO()) == 0
    assert decision_json_lines(out.getvalue())[0]["decision"] == "allow"


def test_cli_explain_state_on_an_unreadable_store_exits_3(tmp_path: Path):
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps(qr("b", 100)), encoding="utf-8")
    err = io.StringIO()
    assert main(["explain", "--state", f"sqlite:///{tmp_path}", str(probe)], out=io.StringIO(), err=err) == 3
    assert "unreachable or corrupt" in err.getvalue()
