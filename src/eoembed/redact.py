"""One redaction for everything eoembed writes or prints: manifests, summaries, errors, logs.

Signed asset URLs carry their credentials in the query string (Planetary Computer's Azure
SAS ``sv=...&se=...&sig=...``, S3 presigned ``X-Amz-Signature``, GCS ``X-Goog-Signature``),
and GDAL quotes the full URL when a read fails without an HTTP status. So every query value
of a URL is masked (the parameter names stay, they help to debug), as are ``user:password@``
in URLs, ``Authorization``/``Bearer``/``Basic`` credentials, and credential-like parameters
wherever they appear (also percent-encoded, as inside ``/vsicurl?url=...``).
"""

from __future__ import annotations

import logging
import re

__all__ = ["MASK", "RedactingFilter", "redact"]

MASK = "***"
"""What a secret is replaced by."""

# scheme://user:password@host -> scheme://***@host
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"<>]+@")
# The query string of a URL: everything after "?" up to whitespace, a quote or a bracket.
_URL_QUERY = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s?'\"<>]*\?)(?P<query>[^\s'\"<>)\]]*)")
# One key=value pair of a query string (the key kept).
_PAIR = re.compile(r"(?P<key>[^&=#;]+)(?P<eq>=)(?P<value>[^&#;]*)")
# Credential-like parameters outside a recognisable URL (or percent-encoded inside one):
# names that only mean a credential anywhere, and short SAS/query names (``se``, ``key``...)
# only in a query-string context, so that ``key=...`` in an ordinary message survives.
_VALUE = r"(?P<eq>=|%3D)(?P<value>[^&\s'\"<>]+?)(?=&|%26|\s|'|\"|<|>|$)"
_LONG_NAMES = (
    r"sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
    r"x-goog-credential|access_token|token|api_key|apikey|password|secret"
)
_SECRET_PARAM = re.compile(
    rf"(?i)(?<![A-Za-z0-9_.-])(?P<key>{_LONG_NAMES})" + _VALUE
)
_SECRET_QUERY_PARAM = re.compile(
    r"(?i)(?:(?<=[?&])|(?<=%3F)|(?<=%26))"
    rf"(?P<key>se|st|sv|sp|sr|spr|skoid|sktid|skt|ske|sks|skv|key|{_LONG_NAMES})"
    + _VALUE
)
# Authorization: Bearer xyz / Basic xyz / token xyz
_AUTH = re.compile(r"(?i)\b(?P<kind>bearer|basic)\s+(?P<value>[A-Za-z0-9._~+/=-]{8,})")
_AUTH_HEADER = re.compile(
    r"(?i)(?P<key>authorization\s*[:=]\s*)(?:(?P<kind>bearer|basic|token|digest)\s+)?"
    r"(?P<value>[^\s,;'\"]+)"
)


def _mask_query(match: re.Match[str]) -> str:
    query = _PAIR.sub(lambda m: f"{m['key']}{m['eq']}{MASK}", match["query"])
    return match["head"] + query


def redact(text: object) -> str:
    """``str(text)`` with credentials masked; safe to write to files, logs and terminals.

    >>> redact("https://acc.blob.core.windows.net/c/B04.tif?sv=2021&se=2030-01-01&sig=abc%3D")
    'https://acc.blob.core.windows.net/c/B04.tif?sv=***&se=***&sig=***'
    >>> redact("https://user:pw@example.org/x.tif")
    'https://***@example.org/x.tif'
    """
    out = str(text)
    out = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", out)
    out = _URL_QUERY.sub(_mask_query, out)
    for pattern in (_SECRET_QUERY_PARAM, _SECRET_PARAM):
        out = pattern.sub(
            lambda m: m.group(0) if m["value"] == MASK else f"{m['key']}{m['eq']}{MASK}", out
        )
    out = _AUTH_HEADER.sub(
        lambda m: f"{m['key']}{m['kind'] + ' ' if m['kind'] else ''}{MASK}", out
    )
    return _AUTH.sub(
        lambda m: m.group(0) if m["value"] == MASK else f"{m['kind']} {MASK}", out
    )


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record with its message redacted.

    For loggers that relay other libraries' messages (rasterio relays GDAL's, which quote
    signed URLs); attach it for the duration of the work that needs it, and remove it after.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its redacted text; never drops a record."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True
