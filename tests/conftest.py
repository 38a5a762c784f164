"""Shared fixtures: Hypothesis profiles, pack builders, the acceptance cases."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from policy_engine.jsonio import parse_json
from policy_engine.matchers import durable_available
from policy_engine.testing.histories import without_screening

# `ci`: quick and deterministic, used by .ci/run. `thorough`: a long local search
# (HYPOTHESIS_PROFILE=thorough pytest tests/test_differential.py). The example database stays out of git.
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "rules"
EXAMPLES = REPO / "examples"
#: The specification files the tests check against. The repository keeps copies in tests/data so a fresh clone
#: tests on its own; where ../shared/spec is beside the checkout (CI), test_spec_copies_are_current checks that
#: the copies still equal it.
SPEC_DATA = Path(__file__).resolve().parent / "data"
SHARED_SPEC_DIR = REPO.parent / "shared" / "spec"
SHARED_SPEC = SPEC_DATA
CASES_FILE = SPEC_DATA / "cases.jsonl"

DURABLE_OK = durable_available()[0]
MATCHERS = ["python", "durable"] if DURABLE_OK else ["python"]
needs_durable = pytest.mark.skipif(not DURABLE_OK, reason="durable-rules cannot import on this interpreter")
#: A real redis-server for the tests that claim Redis behaviour (.ci/run starts one and sets this); they are
#: skipped without it so a developer without redis-server can still run the suite. Each test empties that db.
TEST_REDIS = os.environ.get("POLICY_ENGINE_TEST_REDIS")
needs_redis = pytest.mark.skipif(not TEST_REDIS, reason="POLICY_ENGINE_TEST_REDIS is unset: no redis-server to "
                                                        "test against (.ci/run starts one)")


def fresh_redis() -> str:
    """The test Redis's URL, its db emptied: every test starts from no recorded payments."""
    assert TEST_REDIS, "mark the test with needs_redis"
    import redis

    with redis.Redis.from_url(TEST_REDIS) as db:
        db.flushdb()
    return TEST_REDIS

#: The manifest and FX table every fixture pack starts from (rates as in the default pack).
PACK_HEADER = """\
pack: fixture
version: "1"
reference_fx:
  - as_of: 2020-01-01
    rates: {CNY: "1", USD: "7.2", EUR: "7.8", GBP: "9.1", HKD: "0.92", JPY: "0.048"}
timezones: {CN: Asia/Shanghai, HK: Asia/Hong_Kong, MO: Asia/Macau, TW: Asia/Taipei, SG: Asia/Singapore,
            JP: Asia/Tokyo, AU: Australia/Sydney, US: America/New_York, GB: Europe/London, IE: Europe/Dublin,
            DE: Europe/Berlin, FR: Europe/Paris, NL: Europe/Amsterdam, CH: Europe/Zurich, "NO": Europe/Oslo,
            IS: Atlantic/Reykjavik}
"""


def load_cases() -> list[dict]:
    with open(CASES_FILE, encoding="utf-8") as fh:
        return [parse_json(line) for line in fh if line.strip()]


@pytest.fixture(scope="session")
def cases() -> list[dict]:
    return load_cases()


@pytest.fixture(scope="module", params=MATCHERS)
def bundled_engine(request):
    """The bundled pack, once per matcher (tests using it run on every matcher this interpreter has)."""
    from policy_engine import PolicyEngine

    engine = PolicyEngine.from_path(None, matcher=request.param)
    yield engine
    engine.close()


@pytest.fixture
def make_pack(tmp_path: Path) -> Callable[..., Path]:
    """Write a one-file pack: ``make_pack(rules_yaml, lists_yaml="")`` -> path of the file.

    ``rules_yaml`` is the YAML text of the `rules:` list items (dedented); the header adds the manifest and FX.
    """
    counter = {"n": 0}

    def build(rules_yaml: str, lists_yaml: str = "", header: str = PACK_HEADER) -> Path:
        counter["n"] += 1
        body = header
        if lists_yaml:
            body += "lists:\n" + textwrap.indent(textwrap.dedent(lists_yaml), "  ")
        body += "rules:\n" + textwrap.indent(textwrap.dedent(rules_yaml), "  ")
        path = tmp_path / f"pack{counter['n']}.yaml"
        path.write_text(body, encoding="utf-8")
        return path

    return build


def base_request(**overrides) -> dict:
    """A valid, unremarkable request (CNY 100 debit-card purchase at a CN grocery, every fact a rule may need
    stated, so nothing fires and nothing is undecided); keyword overrides use `__` for nesting, DELETE removes.

    Missing data is unknown (DOMAIN §5.1 point 6), so a test that wants a rule *not* to apply states the facts
    that make it false rather than leaving them out; tests of missing data delete them explicitly. No `history`:
    a pack accepts only the counters it reads (the default pack's RSK-007 is skipped without a lifetime count)."""
    req = {
        "request_id": "t-1",
        "timestamp": "2025-06-10T14:30:00+08:00",
        "payer": {"id": "u-1", "name": "Wang Fang", "type": "individual", "kyc_level": "enhanced",
                  "account_tier": "III", "age": 32, "residence_country": "CN", "account_age_days": 420,
                  "sanctions_hit": False},
        "funding_source": {"type": "debit_card", "issuer_country": "CN"},
        "purpose": "merchant_purchase",
        "merchant": {"id": "m-1", "name": "Example Grocery", "mcc": "5411", "country": "CN"},
        "amount": {"value": 100, "currency": "CNY"},
        "channel": "in_app",
        "auth": {"factors": 2, "digital_cert": False, "sca_performed": False},
        "device": {"id": "d-1", "is_new": False, "distinct_payers_24h": 1},
        "ip_country": "CN",
        "risk_score": 12,
        "cross_border": False,
        "fx_purchase": False,
    }
    for key, value in overrides.items():
        node = req
        parts = key.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if value is _DELETE:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return req


_DELETE = object()
DELETE = _DELETE


def decision_json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def baseline_rules(tmp_path_factory) -> Path:
    """The bundled pack with CMP-004 (the Class I lifetime cap) reviewing instead of denying, and without name
    screening (CMP-025): payments only CMP-004 stops flip deny -> review (named on both sides), and a candidate's
    screening hits flip too."""
    root = without_screening(RULES, tmp_path_factory.mktemp("baseline") / "rules")
    accounts = root / "compliance" / "pboc_accounts.yaml"
    head, sep, tail = accounts.read_text().partition("  - id: CMP-004\n")
    assert sep and "    outcome: deny\n" in tail
    accounts.write_text(head + sep + tail.replace("    outcome: deny\n", "    outcome: review\n", 1))
    return root
