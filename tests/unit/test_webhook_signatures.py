"""`conduit.webhooks`: what the sender signs and what a receiver verifies — both schemes, the
timestamp window, and two secrets during a rotation's grace — checked against an independent
computation with `hmac` as a receiver would write it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from conduit.webhooks import (
    WebhookVerificationError,
    generate_secret,
    secret_key,
    sign,
    verify,
)

SECRET = generate_secret()
OTHER = generate_secret()
BODY = json.dumps({"task_id": "t-1", "status": "succeeded", "output": "héllo"}).encode()


def signed(secrets: str | list[str] = SECRET, *, timestamp: int | None = None) -> dict[str, str]:
    return sign(secrets, msg_id="evt-1", body=BODY, timestamp=timestamp)


def only(headers: dict[str, str], *names: str) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name in names}


class TestSecrets:
    def test_a_secret_is_whsec_and_base64_of_24_to_32_random_bytes(self) -> None:
        assert SECRET.startswith("whsec_")
        assert len(base64.b64decode(SECRET.removeprefix("whsec_"))) == 32
        assert len(secret_key(generate_secret(24))) == 24
        assert generate_secret() != generate_secret()

    def test_a_secret_outside_the_format_is_refused(self) -> None:
        with pytest.raises(WebhookVerificationError, match="whsec_"):
            secret_key("whsec_not base64!")
        with pytest.raises(ValueError):
            generate_secret(16)


class TestSign:
    def test_dify_signature_is_hex_hmac_of_the_body_keyed_by_the_decoded_secret(self) -> None:
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        expected = hmac.new(key, BODY, hashlib.sha256).hexdigest()
        assert signed()["X-Dify-Signature-V1"] == expected

    def test_standard_signature_covers_id_timestamp_and_body(self) -> None:
        headers = signed(timestamp=1_700_000_000)
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        content = b"evt-1.1700000000." + BODY
        digest = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        assert headers["webhook-id"] == "evt-1"
        assert headers["webhook-timestamp"] == "1700000000"
        assert headers["webhook-signature"] == f"v1,{digest}"

    def test_two_secrets_give_two_signatures_of_each_scheme_current_first(self) -> None:
        both = signed([SECRET, OTHER])
        first, second = signed(SECRET), signed(OTHER)
        assert both["X-Dify-Signature-V1"] == (
            f"{first['X-Dify-Signature-V1']},{second['X-Dify-Signature-V1']}"
        )
        assert len(both["webhook-signature"].split(" ")) == 2


class TestVerify:
    def test_round_trip_of_both_schemes_returns_the_parsed_body(self) -> None:
        headers = signed()
        assert verify(SECRET, headers, BODY)["output"] == "héllo"
        assert verify(SECRET, headers, BODY, scheme="standard")["task_id"] == "t-1"
        assert verify(SECRET, headers, BODY.decode(), scheme="dify")["task_id"] == "t-1"

    def test_header_names_are_case_insensitive(self) -> None:
        headers = {name.upper(): value for name, value in signed().items()}
        assert verify(SECRET, headers, BODY)["task_id"] == "t-1"

    @pytest.mark.parametrize("scheme", ["standard", "dify"])
    def test_a_tampered_body_is_refused(self, scheme: str) -> None:
        tampered = BODY.replace(b"succeeded", b"failed")
        with pytest.raises(WebhookVerificationError, match="matches"):
            verify(SECRET, signed(), tampered, scheme=scheme)  # type: ignore[arg-type]

    @pytest.mark.parametrize("scheme", ["standard", "dify"])
    def test_the_wrong_secret_is_refused(self, scheme: str) -> None:
        with pytest.raises(WebhookVerificationError, match="matches"):
            verify(OTHER, signed(), BODY, scheme=scheme)  # type: ignore[arg-type]

    def test_a_stale_timestamp_is_refused(self) -> None:
        headers = signed(timestamp=int(time.time()) - 301)
        with pytest.raises(WebhookVerificationError, match="too old"):
            verify(SECRET, headers, BODY)
        assert verify(SECRET, headers, BODY, tolerance=600)["task_id"] == "t-1"

    def test_a_future_timestamp_is_refused(self) -> None:
        with pytest.raises(WebhookVerificationError, match="future"):
            verify(SECRET, signed(timestamp=int(time.time()) + 301), BODY)

    def test_a_changed_timestamp_breaks_the_standard_signature(self) -> None:
        headers = signed()
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) + 1)
        with pytest.raises(WebhookVerificationError, match="webhook-signature"):
            verify(SECRET, headers, BODY)

    def test_the_standard_scheme_needs_its_id_and_timestamp(self) -> None:
        headers = signed()
        with pytest.raises(WebhookVerificationError, match="webhook-timestamp"):
            verify(SECRET, only(headers, "webhook-id", "webhook-signature"), BODY)
        with pytest.raises(WebhookVerificationError, match="webhook-id"):
            verify(SECRET, only(headers, "webhook-timestamp", "webhook-signature"), BODY)

    def test_stripping_the_standard_headers_is_refused_when_the_receiver_asks_for_it(
        self,
    ) -> None:
        headers = only(signed(), "X-Dify-Signature-V1", "webhook-timestamp")
        assert verify(SECRET, headers, BODY)["task_id"] == "t-1"  # the weaker scheme alone
        with pytest.raises(WebhookVerificationError, match="webhook-id"):
            verify(SECRET, headers, BODY, scheme="standard")

    def test_either_secret_verifies_during_a_rotation(self) -> None:
        headers = signed([SECRET, OTHER])
        for secret in (SECRET, OTHER):
            for scheme in ("standard", "dify"):
                assert verify(secret, headers, BODY, scheme=scheme)["task_id"] == "t-1"  # type: ignore[arg-type]
        with pytest.raises(WebhookVerificationError):
            verify(generate_secret(), headers, BODY)

    def test_a_receiver_may_hold_both_secrets(self) -> None:
        assert verify([OTHER, SECRET], signed(SECRET), BODY)["task_id"] == "t-1"

    def test_a_body_that_is_not_json_is_refused(self) -> None:
        headers = sign(SECRET, msg_id="evt-2", body=b"not json")
        with pytest.raises(WebhookVerificationError, match="JSON"):
            verify(SECRET, headers, b"not json")


def test_the_module_imports_only_the_standard_library() -> None:
    import ast
    import sys

    import conduit.webhooks as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - {"__future__"} <= sys.stdlib_module_names
