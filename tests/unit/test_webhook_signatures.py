"""Signatures as any Standard Webhooks verifier checks them."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from helix.webhooks.sender import headers_for
from helix.webhooks.signatures import new_secret, secret_key, sign, signing_secret


def test_a_signed_message_verifies_with_the_standardwebhooks_library() -> None:
    secret = new_secret()
    body = b'{"id":"e1","type":"job.queued"}'
    headers = headers_for("e1", body, [secret])
    assert Webhook(secret).verify(body, headers) == {"id": "e1", "type": "job.queued"}


def test_during_a_rotation_either_secret_verifies_and_a_stranger_does_not() -> None:
    old, new = new_secret(), new_secret()
    body = b"{}"
    headers = headers_for("e2", body, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_a_tampered_body_does_not_verify() -> None:
    secret = new_secret()
    headers = headers_for("e3", b'{"a":1}', [secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)


def test_a_generated_secret_is_whsec_and_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret_key(secret)) == 32
    assert new_secret() != secret


@pytest.mark.parametrize("bad", ["plain", "whsec_!!!", "whsec_c2hvcnQ="])
def test_a_secret_not_in_the_standard_form_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        secret_key(bad)


def test_the_signature_is_v1_and_base64_of_hmac_sha256() -> None:
    # The Standard Webhooks specification's own example.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def test_a_plain_secret_is_the_hmac_key_itself() -> None:
    plain = "my-helixcode-secret-0123456789"
    secret = signing_secret(plain)
    body = b'{"id":"e4"}'
    headers = headers_for("e4", body, [secret])
    # What a subscriber holding only the plain secret computes, by the Standard Webhooks rule.
    signed = f"e4.{headers['webhook-timestamp']}.".encode() + body
    digest = hmac.new(plain.encode(), signed, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()
    Webhook(secret).verify(body, headers)


def test_a_whsec_secret_is_kept_as_it_is() -> None:
    secret = new_secret()
    assert signing_secret(secret) == secret


@pytest.mark.parametrize(
    "bad", ["short", "x" * 65, "has a space in it 0123456789", "ünïcødé-0123456789-abcdefg"]
)
def test_a_plain_secret_too_short_too_long_or_not_printable_ascii_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        signing_secret(bad)
