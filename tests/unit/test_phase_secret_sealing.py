"""Sealing phase secrets, without a database: AES-256-GCM bound to a project's variable, key
rotation, refusals that fail closed, the redacted JSON form, the plan sealing of the service
layer, and masking secrets out of reports."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helix.auth.sealing import Sealer, SecretError, key_id, new_key, parse_keys
from helix.domain import job
from helix.domain.job import OutputStream
from helix.domain.project import PhaseSpec, SealedSecret, normalise_phases
from helix.domain.project.decider import MAX_SEALED_CHARS
from helix.errors import Unavailable, ValidationError
from helix.serialization import converter
from helix.services.phase_secrets import (
    MAX_MASKED,
    MAX_SECRET_CHARS,
    Masker,
    PhaseDraft,
    masked_pieces,
    seal_plan,
)

PROJECT = uuid.UUID("00000000-0000-4000-8000-000000000001")
OTHER_PROJECT = uuid.UUID("00000000-0000-4000-8000-000000000002")
NOW = datetime(2025, 1, 1, tzinfo=UTC)
SECRET = "hunter2-but-longer"


def sealer(*keys: str) -> Sealer:
    return Sealer.from_text(keys or (new_key(),))


# Text that UTF-8 can encode (no lone surrogates), as any JSON string a client sends could be.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=200)


@given(TEXT)
def test_a_sealed_value_opens_to_its_plaintext_for_its_own_project_and_variable(
    plaintext: str,
) -> None:
    ring = sealer()
    sealed = ring.seal(plaintext, project_id=PROJECT, name="TOKEN")
    assert ring.open(sealed, project_id=PROJECT, name="TOKEN") == plaintext
    assert ring.seal(plaintext, project_id=PROJECT, name="TOKEN") != sealed  # a fresh nonce


def test_a_sealed_value_names_its_key_and_holds_no_plaintext() -> None:
    key = new_key()
    sealed = sealer(key).seal(SECRET, project_id=PROJECT, name="TOKEN").sealed
    version, kid, nonce, ciphertext = sealed.split(".")
    assert (version, kid) == ("v1", key_id(base64.b64decode(key)))
    assert len(base64.urlsafe_b64decode(nonce + "==")) == 12
    assert SECRET not in sealed and SECRET.encode() not in base64.urlsafe_b64decode(
        ciphertext + "=" * (-len(ciphertext) % 4)
    )


def test_a_value_moved_to_another_project_or_variable_does_not_open() -> None:
    ring = sealer()
    sealed = ring.seal(SECRET, project_id=PROJECT, name="TOKEN")
    with pytest.raises(SecretError, match="another project or variable"):
        ring.open(sealed, project_id=OTHER_PROJECT, name="TOKEN")
    with pytest.raises(SecretError, match="another project or variable"):
        ring.open(sealed, project_id=PROJECT, name="OTHER")


def test_an_altered_value_or_one_sealed_with_another_key_does_not_open() -> None:
    ring = sealer()
    sealed = ring.seal(SECRET, project_id=PROJECT, name="TOKEN").sealed
    version, kid, nonce, ciphertext = sealed.split(".")
    raw = bytearray(base64.urlsafe_b64decode(ciphertext + "=" * (-len(ciphertext) % 4)))
    raw[0] ^= 1
    altered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    cases = {
        f"{version}.{kid}.{nonce}.{altered}": "altered",
        f"{version}.{kid}.{nonce[:-2]}.{ciphertext}": "damaged",
        f"{version}.{kid}.!!!.{ciphertext}": "damaged",
        f"v2.{kid}.{nonce}.{ciphertext}": "not a sealed secret",
        "v1.only.three": "not a sealed secret",
    }
    for text, reason in cases.items():
        with pytest.raises(SecretError, match=reason):
            ring.open(SealedSecret(sealed=text), project_id=PROJECT, name="TOKEN")
    stranger = sealer()
    with pytest.raises(SecretError, match=f"key {kid}, which this server does not hold"):
        stranger.open(SealedSecret(sealed=sealed), project_id=PROJECT, name="TOKEN")


def test_a_rotated_ring_seals_with_its_first_key_and_opens_with_every_one() -> None:
    old, new = new_key(), new_key()
    sealed_before = sealer(old).seal(SECRET, project_id=PROJECT, name="TOKEN")
    rotated = sealer(new, old)
    assert rotated.open(sealed_before, project_id=PROJECT, name="TOKEN") == SECRET
    sealed_after = rotated.seal(SECRET, project_id=PROJECT, name="TOKEN")
    assert sealed_after.sealed.split(".")[1] == key_id(base64.b64decode(new))
    assert rotated.key_ids == (key_id(base64.b64decode(new)), key_id(base64.b64decode(old)))
    with pytest.raises(SecretError):
        sealer(old).open(sealed_after, project_id=PROJECT, name="TOKEN")


def test_keys_are_base64_of_32_bytes_and_a_bad_one_is_named_without_echoing_it() -> None:
    urlsafe = base64.urlsafe_b64encode(bytes(range(200, 232))).decode()
    assert parse_keys([urlsafe]) == (bytes(range(200, 232)),)
    for bad in ("not base64 at all!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="HELIX_SECRETS_KEY: key 2 is not") as caught:
            parse_keys([new_key(), bad])
        assert bad not in str(caught.value)
    with pytest.raises(ValueError, match="no key"):
        parse_keys([])


def test_the_json_form_of_a_sealed_secret_is_redacted_and_reads_back() -> None:
    spec = PhaseSpec(name="b", env={"MODE": "x", "TOKEN": SealedSecret(sealed="v1.k.n.c")})
    data = converter.unstructure(spec)
    assert data["env"] == {"MODE": "x", "TOKEN": {"sealed": "v1.k.n.c", "redacted": True}}
    assert converter.structure(data, PhaseSpec) == spec
    assert "v1.k.n.c" not in repr(spec)


def test_the_domain_keeps_a_sealed_value_and_refuses_one_that_is_not_sealed_text() -> None:
    sealed = SealedSecret(sealed="v1.k.n.c")
    [phase] = normalise_phases([PhaseSpec(name="b", command=("x",), env={"T": sealed})])
    assert phase.env == {"T": sealed}
    for bad in ("", "é" * 3, "x" * (MAX_SEALED_CHARS + 1)):
        with pytest.raises(ValidationError, match="invalid value") as caught:
            normalise_phases([PhaseSpec(name="b", env={"T": SealedSecret(sealed=bad)})])
        assert caught.value.details["field"] == "phases[0].env.T"


def test_a_plan_is_sealed_for_its_project_and_a_sealed_value_from_elsewhere_is_refused() -> None:
    ring = sealer()
    draft = PhaseDraft(spec=PhaseSpec(name="b", env={"MODE": "x"}), secrets={"TOKEN": SECRET})
    [phase] = seal_plan(ring, PROJECT, [draft])
    assert phase.env["MODE"] == "x"
    sealed = phase.env["TOKEN"]
    assert isinstance(sealed, SealedSecret)
    assert ring.open(sealed, project_id=PROJECT, name="TOKEN") == SECRET
    # Sent back as shown, it is kept as it is; in another project it is refused.
    assert seal_plan(ring, PROJECT, [phase]) == (phase,)
    with pytest.raises(ValidationError, match="give the secret's value again") as caught:
        seal_plan(ring, OTHER_PROJECT, [phase])
    assert caught.value.details["field"] == "phases[0].env.TOKEN"
    assert SECRET not in repr(draft)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TOKEN", "", "1 to"),
        ("TOKEN", " \n\t", "not only blanks"),
        ("TOKEN", "x" * (MAX_SECRET_CHARS + 1), "1 to"),
        ("TOKEN", "a\x00b", "without NUL"),
        ("TOKEN", "a\ud800b", "text"),
        ("NOT VALID", SECRET, "invalid environment variable"),
        ("T\ud800", SECRET, "invalid environment variable"),
    ],
)
def test_a_bad_secret_is_refused_with_its_field_and_without_its_value(
    name: str, value: str, message: str
) -> None:
    draft = PhaseDraft(spec=PhaseSpec(name="b"), secrets={name: value})
    with pytest.raises(ValidationError, match=message) as caught:
        seal_plan(sealer(), PROJECT, [draft])
    assert value not in caught.value.message or not value.strip()
    assert caught.value.details["phase"] == "b"


def test_without_a_key_a_plan_with_secrets_is_refused_and_one_without_passes() -> None:
    plain = PhaseSpec(name="b", env={"MODE": "x"})
    assert seal_plan(None, PROJECT, [plain]) == (plain,)
    with pytest.raises(Unavailable, match="secrets key"):
        seal_plan(None, PROJECT, [PhaseDraft(spec=plain, secrets={"T": SECRET})])


def test_reports_are_masked_wherever_a_secret_or_a_line_of_one_appears() -> None:
    masker = Masker(["abc", "multi\nline-secret", "abcdef"])
    output = job.RecordOutput(
        fencing_token=1,
        phase="b",
        stream=OutputStream.STDOUT,
        lines=("x abcdef y abc", "line-secret!", "multi", "nothing here"),
        at=NOW,
    )
    masked = masker.report(output)
    assert isinstance(masked, job.RecordOutput)
    assert masked.lines == ("x *** y ***", "***!", "***", "nothing here")
    failed = masker.report(
        job.FailPhase(fencing_token=1, phase="b", error="abc", stderr_tail=("abc!",), at=NOW)
    )
    assert isinstance(failed, job.FailPhase)
    assert (failed.error, failed.stderr_tail) == ("***", ("***!",))
    progress = job.ReportProgress(fencing_token=1, percent=5, at=NOW)
    assert masker.report(progress) is progress


def test_a_plan_holds_a_bounded_number_of_masked_values_and_lines() -> None:
    assert masked_pieces(["one", "multi\nline secret\nab\n\n"]) == [
        "multi\nline secret\nab\n\n",
        "line secret",
        "multi",
        "one",
    ]
    fits = {f"S{n}": f"secret-{n}" for n in range(MAX_MASKED)}
    draft = PhaseDraft(spec=PhaseSpec(name="b"), secrets=fits)
    assert len(seal_plan(sealer(), PROJECT, [draft])[0].env) == MAX_MASKED
    too_many = PhaseDraft(spec=PhaseSpec(name="c"), secrets={"T": "one-more-secret"})
    with pytest.raises(ValidationError, match=f"at most {MAX_MASKED}"):
        seal_plan(sealer(), PROJECT, [draft, too_many])


def test_a_masked_line_stays_within_the_line_limit() -> None:
    from helix.domain.job.decider import MAX_LINE_CHARS

    line = "a" * MAX_LINE_CHARS
    output = job.RecordOutput(
        fencing_token=1, phase="b", stream=OutputStream.STDOUT, lines=(line,), at=NOW
    )
    masked = Masker(["a"]).report(output)
    assert isinstance(masked, job.RecordOutput)
    assert len(masked.lines[0]) == MAX_LINE_CHARS and set(masked.lines[0]) == {"*"}
