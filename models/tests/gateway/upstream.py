"""Upstream side of models/tests/gateway_upstream.rs: the real omnibase-core and
omnibase-infra hash, sign and validate what the Rust side asks for.

Reads one JSON request on stdin, writes one JSON answer on stdout:

    {"hash": [json_text, ...],
     "sign": [{"seed_hex", "realm", "runtime_id", "bus_id", "trace_id", "payload_text"}, ...],
     "validate": [{"record", "expected_realm", "public_keys": {runtime_id: base64}}, ...]}

hash: upstream's hash_canonical_json of json.loads(text), with the canonical text.
sign: ServiceEnvelopeSigner.sign_dict, answered as the JSON text of model_dump(mode="json").
validate: the runtime's path (runtime_host_process._validate_gateway_envelope):
json.loads, ModelMessageEnvelope.model_validate, then
ServiceEnvelopeValidator(reject_unsigned=True).validate_envelope.
"""

import base64
import json
import sys
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from omnibase_core.crypto.crypto_blake3_hasher import hash_canonical_json
from omnibase_core.models.envelope.model_message_envelope import ModelMessageEnvelope
from omnibase_infra.gateway.services.service_envelope_signer import ServiceEnvelopeSigner
from omnibase_infra.gateway.services.service_envelope_validator import (
    ServiceEnvelopeValidator,
)


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def do_hash(text):
    obj = json.loads(text)
    return {"canonical": canonical(obj), "hash": hash_canonical_json(obj)}


def do_sign(req):
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(req["seed_hex"]))
    signer = ServiceEnvelopeSigner(realm=req["realm"], runtime_id=req["runtime_id"], private_key=key)
    envelope = signer.sign_dict(
        payload=json.loads(req["payload_text"]),
        bus_id=req["bus_id"],
        trace_id=UUID(req["trace_id"]),
    )
    return json.dumps(envelope.model_dump(mode="json"))


def do_validate(req):
    answer = {"parsed": False}
    try:
        envelope = ModelMessageEnvelope.model_validate(json.loads(req["record"]))
    except Exception as e:  # noqa: BLE001 - the answer says why
        answer["parse_error"] = f"{type(e).__name__}: {e}"
        return answer
    answer["parsed"] = True
    answer["emitted_at"] = envelope.emitted_at.isoformat()
    answer["payload_hash"] = envelope.signature.payload_hash
    # The other parse path upstream has (pydantic's own JSON reader).
    try:
        ModelMessageEnvelope[dict[str, object]].model_validate_json(req["record"])
        answer["json_mode_parsed"] = True
    except Exception as e:  # noqa: BLE001
        answer["json_mode_parsed"] = False
        answer["json_mode_error"] = f"{type(e).__name__}: {e}"
    keys = {
        runtime_id: Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key))
        for runtime_id, key in req["public_keys"].items()
    }
    validator = ServiceEnvelopeValidator(
        expected_realm=req["expected_realm"], public_keys=keys, reject_unsigned=True
    )
    result = validator.validate_envelope(envelope)
    answer["is_valid"] = result.is_valid
    answer["error_code"] = result.error_code.value if result.error_code else None
    answer["error_message"] = result.error_message
    return answer


def main():
    request = json.load(sys.stdin)
    answer = {
        "hash": [do_hash(t) for t in request.get("hash", [])],
        "sign": [do_sign(r) for r in request.get("sign", [])],
        "validate": [do_validate(r) for r in request.get("validate", [])],
    }
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
