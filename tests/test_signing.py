"""Signed packs (policy_engine.signing, README "Signed packs"): an Ed25519 signature over the pack digest, checked
at load and on every reload when the engine has a verify key; a refused reload keeps the packs that run."""

from __future__ import annotations

import io
import json
import stat
import threading
from pathlib import Path

import pytest
from conftest import PACK_HEADER, RULES, base_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("cryptography")

from policy_engine import PolicyEngine, RuleSetError, load_ruleset
from policy_engine.cli import main
from policy_engine.signing import SignatureError, sign_pack, signature_path, verify_pack
from policy_engine.signing import generate_keypair as keygen
from policy_engine.traffic import Rollout

RULES_YAML = """\
rules:
  - id: BIG
    category: risk
    title: Large payment
    when: {field: amount.value, op: gte, value: 1000}
    outcome: deny
    reason: "Amount {amount.value} is large"
    source: test
    verified: false
"""


def write_pack(root: Path, version: str = "1", limit: int = 1000) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pack.yaml").write_text(PACK_HEADER.replace('version: "1"', f'version: "{version}"'), encoding="utf-8")
    (root / "rules.yaml").write_text(RULES_YAML.replace("1000", str(limit)), encoding="utf-8")
    return root


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "keys" / "signing.pem", tmp_path / "keys" / "signing.pub"
    private.parent.mkdir()
    keygen(private, public)
    return private, public


@pytest.fixture
def signed(tmp_path: Path, keys) -> Path:
    pack = write_pack(tmp_path / "pack")
    sign_pack(pack, keys[0])
    return pack


def test_sign_and_verify_round_trip(tmp_path: Path, keys):
    private, public = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    pack = write_pack(tmp_path / "pack")
    digest = load_ruleset(pack).digest
    path = sign_pack(pack, private)
    assert path == pack / "pack.sig" == signature_path(pack)
    assert load_ruleset(pack).digest == digest  # the signature file is not part of what it signs
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["algorithm"] == "ed25519" and document["digest"] == digest
    info = verify_pack(pack, public)
    assert (info.digest, info.key_id, info.signed_at) == (digest, document["key_id"], document["signed_at"])
    assert len(info.key_id) == 16

    engine = PolicyEngine.from_path(pack, verify_key=public)
    signature = engine.pack_info()["signature"]
    assert signature == {"state": "verified", "key_id": info.key_id, "signed_at": info.signed_at}
    assert engine.evaluate(base_request(amount__value=5000)).decision == "deny"
    engine.close()


def test_a_one_file_pack_is_signed_beside_the_file(tmp_path: Path, keys):
    pack = tmp_path / "one.yaml"
    pack.write_text(PACK_HEADER + RULES_YAML, encoding="utf-8")
    assert sign_pack(pack, keys[0]) == tmp_path / "one.yaml.sig"
    assert verify_pack(pack, keys[1]).digest == load_ruleset(pack).digest


def test_signature_state_without_a_verify_key(signed: Path, tmp_path: Path):
    for pack, state in ((signed, "not_checked"), (write_pack(tmp_path / "plain"), "unsigned")):
        engine = PolicyEngine.from_path(pack)
        assert engine.pack_info()["signature"] == {"state": state}
        engine.close()


def tamper(pack: Path) -> None:
    """Change one byte of a rule file: the limit 1000 becomes 1001."""
    rules = pack / "rules.yaml"
    data = rules.read_bytes()
    index = data.index(b"1000") + 3
    rules.write_bytes(data[:index] + b"1" + data[index + 1:])


def test_a_tampered_pack_is_refused_at_load_and_at_reload_keeping_the_old_pack(signed: Path, keys):
    engine = PolicyEngine.from_path(signed, verify_key=keys[1])
    before = engine.pack_info()
    tamper(signed)
    with pytest.raises(SignatureError, match="changed since it was signed") as info:
        verify_pack(signed, keys[1])
    assert info.value.reason == "tampered"
    with pytest.raises(SignatureError, match="changed since it was signed"):
        PolicyEngine.from_path(signed, verify_key=keys[1])
    with pytest.raises(SignatureError):
        engine.reload()
    assert engine.ruleset.digest == before["digest"]
    assert engine.evaluate(base_request(amount__value=1000)).decision == "deny"  # the old limit still applies
    failure = engine.pack_info()["last_reload_error"]
    assert failure["path"] == str(signed) and "changed since it was signed" in failure["message"]
    assert engine.stats()["reload_failures"] == 1 and engine.stats()["reloads"] == 0

    sign_pack(signed, keys[0])  # the change reviewed and signed: the reload goes through and clears the failure
    engine.reload()
    assert engine.evaluate(base_request(amount__value=1000)).decision == "allow"
    assert engine.pack_info()["last_reload_error"] is None and engine.last_reload_error is None
    assert engine.stats()["reloads"] == 1
    engine.close()


def test_the_wrong_key_and_an_unsigned_pack_are_refused(signed: Path, tmp_path: Path, keys):
    other_private, other_public = tmp_path / "other.pem", tmp_path / "other.pub"
    keygen(other_private, other_public)
    with pytest.raises(SignatureError, match="was made with key") as info:
        PolicyEngine.from_path(signed, verify_key=other_public)
    assert info.value.reason == "wrong_key"

    unsigned = write_pack(tmp_path / "unsigned")
    with pytest.raises(SignatureError, match="not signed") as info:
        PolicyEngine.from_path(unsigned, verify_key=keys[1])
    assert info.value.reason == "unsigned"
    engine = PolicyEngine.from_path(signed, verify_key=keys[1])
    with pytest.raises(SignatureError, match="not signed"):
        engine.reload(unsigned)
    assert engine.ruleset.path == str(signed)
    engine.close()


@pytest.mark.parametrize(("edit", "reason", "message"), [
    (lambda d: d | {"digest": "sha256:" + "0" * 64}, "tampered", "altered after signing"),
    (lambda d: d | {"signed_at": "2020-01-01T00:00:00Z"}, "tampered", "altered after signing"),
    (lambda d: d | {"signature": "AAAA" + d["signature"][4:]}, "tampered", "altered after signing"),
    (lambda d: d | {"signature": "not base64!"}, "malformed", "not base64"),
    (lambda d: d | {"algorithm": "rsa"}, "malformed", "only ed25519"),
    (lambda d: {k: v for k, v in d.items() if k != "key_id"}, "malformed", "needs the string fields"),
    (lambda d: [d], "malformed", "needs the string fields"),
])
def test_an_altered_or_malformed_signature_file_is_refused(signed: Path, keys, edit, reason, message):
    path = signed / "pack.sig"
    path.write_text(json.dumps(edit(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")
    with pytest.raises(SignatureError, match=message) as info:
        verify_pack(signed, keys[1])
    assert info.value.reason == reason


def test_a_signature_file_that_is_not_json_or_a_key_that_is_not_one_is_refused(signed: Path, keys, tmp_path):
    (signed / "pack.sig").write_bytes(b"\xff" * 10)
    with pytest.raises(SignatureError, match="not JSON") as info:
        verify_pack(signed, keys[1])
    assert info.value.reason == "malformed"
    with pytest.raises(SignatureError, match="not an unencrypted PEM public key") as info:
        verify_pack(signed, keys[0])  # the private key where the public one belongs
    assert info.value.reason == "bad_key"
    with pytest.raises(SignatureError, match="cannot read the public key"):
        verify_pack(signed, tmp_path / "missing.pub")
    with pytest.raises(SignatureError, match="already exists"):
        keygen(keys[0], tmp_path / "new.pub")
    assert not (tmp_path / "new.pub").exists()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_one_byte_change_to_a_rule_file_is_refused_or_changes_nothing(tmp_path_factory, data):
    """Flip any byte of a signed pack's rule file: the pack no longer loads, or is refused as tampered, or its
    content (its digest: what decides) is unchanged, as when the byte was in a comment or whitespace."""
    root = tmp_path_factory.mktemp("flip")
    private, public = root / "k.pem", root / "k.pub"
    keygen(private, public)
    pack = write_pack(root / "pack")
    (pack / "rules.yaml").write_text("# reviewed\n" + RULES_YAML, encoding="utf-8")
    sign_pack(pack, private)
    digest = load_ruleset(pack).digest
    rules = pack / "rules.yaml"
    text = rules.read_bytes()
    index = data.draw(st.integers(0, len(text) - 1), label="index")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != text[index]), label="byte")
    rules.write_bytes(text[:index] + bytes([byte]) + text[index + 1:])
    try:
        engine = PolicyEngine.from_path(pack, verify_key=public)
    except RuleSetError:
        return
    except SignatureError as exc:
        assert exc.reason == "tampered"
        return
    assert engine.ruleset.digest == digest
    engine.close()


def test_shadow_and_candidate_packs_are_verified_too(signed: Path, tmp_path: Path, keys):
    unsigned = write_pack(tmp_path / "unsigned", version="2")
    with pytest.raises(SignatureError, match="not signed"):
        PolicyEngine.from_path(signed, verify_key=keys[1], shadow=[unsigned])
    with pytest.raises(SignatureError, match="not signed"):
        PolicyEngine.from_path(signed, verify_key=keys[1], rollout=Rollout(unsigned, 0.5))
    sign_pack(unsigned, keys[0])
    engine = PolicyEngine.from_path(signed, verify_key=keys[1], shadow=[unsigned], rollout=Rollout(unsigned, 0.5))
    info = engine.pack_info()
    assert info["shadow"][0]["signature"]["state"] == "verified"
    assert info["rollout"]["candidate"]["signature"]["state"] == "verified"
    tamper(unsigned)  # a reload that cannot verify the shadow keeps every pack, the primary included
    old = engine.pack
    with pytest.raises(SignatureError):
        engine.reload()
    assert engine.pack is old
    engine.close()


class BlockingLog:
    """A decision log whose first write waits until released: an evaluation held after it decided."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def write(self, request, decision, context=None) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)


def test_an_evaluation_in_flight_during_a_reload_finishes_on_the_old_pack(tmp_path: Path, keys):
    old_pack = write_pack(tmp_path / "a", version="A")
    new_pack = write_pack(tmp_path / "b", version="B", limit=10)
    for pack in (old_pack, new_pack):
        sign_pack(pack, keys[0])
    log = BlockingLog()
    engine = PolicyEngine.from_path(old_pack, audit=log, verify_key=keys[1])  # type: ignore[arg-type]
    result = {}
    thread = threading.Thread(target=lambda: result.update(d=engine.evaluate(base_request(amount__value=100))))
    thread.start()
    assert log.entered.wait(10)
    engine.reload(new_pack)  # while the evaluation is between deciding and returning
    after = engine.evaluate(base_request(request_id="t-2", amount__value=100))
    log.release.set()
    thread.join(10)
    assert (result["d"].ruleset["version"], result["d"].decision) == ("A", "allow")
    assert (after.ruleset["version"], after.decision) == ("B", "deny")
    engine.close()


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out, err), out.getvalue(), err.getvalue()


def test_cli_keygen_sign_verify_signature(tmp_path: Path):
    private, public = str(tmp_path / "k.pem"), str(tmp_path / "k.pub")
    assert run("keygen", private, public)[0] == 0
    assert run("keygen", private, public)[0] == 2  # never overwrites a key
    pack = write_pack(tmp_path / "pack")
    code, out, _ = run("verify-signature", str(pack), "--key", public, "--json")
    assert code == 1 and json.loads(out)["reason"] == "unsigned"
    assert run("sign", str(pack), "--key", private)[0] == 0
    code, out, _ = run("verify-signature", str(pack), "--key", public, "--json")
    assert code == 0 and json.loads(out)["digest"] == load_ruleset(pack).digest
    tamper(pack)
    code, _, err = run("verify-signature", str(pack), "--key", public)
    assert code == 1 and "changed since it was signed" in err
    assert run("verify-signature", str(pack), "--key", private)[0] == 2  # not a public key
    assert run("sign", str(tmp_path / "missing"), "--key", private)[0] == 2  # no such pack
    (pack / "rules.yaml").write_text("rules: [\n", encoding="utf-8")
    assert run("verify-signature", str(pack), "--key", public)[0] == 2  # the pack does not load


def test_the_bundled_pack_signs(tmp_path: Path, keys):
    import shutil

    pack = tmp_path / "rules"
    shutil.copytree(RULES, pack)
    sign_pack(pack, keys[0])
    assert verify_pack(pack, keys[1]).digest == load_ruleset(RULES).digest
