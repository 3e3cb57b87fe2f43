"""eoembed.redact: what is masked in everything eoembed writes or prints, and what is kept."""

from __future__ import annotations

import logging

import pytest

from eoembed.redact import MASK, RedactingFilter, redact

PC_HREF = (
    "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/18/S/UH/B04.tif"
    "?st=2026-12-03T15%3A00%3A00Z&se=2026-12-04T16%3A00%3A00Z&sp=rl&sv=2024-05-04&sr=c"
    "&skoid=5a1b&sktid=72f9&skt=2026-12-03&ske=2026-12-10&sks=b&skv=2024-05-04"
    "&sig=A1b2C3d4E5%2Bf6G7h8%3D"
)


def test_planetary_computer_sas_token_in_a_gdal_message() -> None:
    message = f"'/vsicurl/{PC_HREF}' not recognized as being in a supported file format."
    out = redact(message)
    assert "A1b2C3d4E5" not in out and "2026-12-04T16" not in out and "5a1b" not in out
    # The file and the parameter names stay: the message still says what failed.
    assert "/vsicurl/https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/18/S/UH/B04.tif?" in out
    assert f"sig={MASK}" in out and f"se={MASK}" in out
    assert out.endswith("not recognized as being in a supported file format.")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("s3://b/k.tif?X-Amz-Credential=AKIAXYZ%2F2026&X-Amz-Signature=deadbeef01", "deadbeef01"),
        ("https://storage.googleapis.com/b/o?X-Goog-Signature=cafe0123", "cafe0123"),
        ("https://alice:hunter2@example.org/weights.pth", "hunter2"),
        ("request failed: Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
        ("Bearer abcdefghijklmnop rejected", "abcdefghijklmnop"),
        # percent-encoded inside a /vsicurl? option string
        ("/vsicurl?url=https%3A%2F%2Fh%2Fa.tif%3Fsig%3Dtopsecret%26se%3D2030&use_head=no",
         "topsecret"),
        ("token=abc123def in a sentence", "abc123def"),
    ],
)
def test_credentials_are_masked(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert MASK in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "HTTP response code: 503",
        "reading assets of STAC item(s) s2-l1c-sample from http://127.0.0.1:8080/stac failed",
        "the keyword design=3 and a token of appreciation",
        "invalid model_args key=[1]: not a number",  # SAS/query names only inside queries
        "invalid se=3: x",
        "CURL error: Recv failure: Connection reset by peer",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_redaction_is_idempotent() -> None:
    once = redact(PC_HREF)
    assert redact(once) == once


def test_logging_filter_redacts_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("eoembed.test.redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("GDAL said %s", PC_HREF)
    assert "A1b2C3d4E5" not in caplog.text and f"sig={MASK}" in caplog.text
