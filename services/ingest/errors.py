"""Camera failures described for operators: classified by error type (never by a URL or another thread's
FFmpeg log), free of credentials; and how credentials get into a camera URL without leaking out of it."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit, urlunsplit

import av

from libs.cameras import CameraEntry
from libs.redact import redact_text
from services.ingest.credentials import (
    CredentialResolver,
    CredentialsNotFound,
    takes_credentials,
)


def camera_credentials(
    entry: CameraEntry, environ: dict[str, str] | None = None, resolver: CredentialResolver | None = None
) -> str | None:
    """'user:password' for the camera's credentials_ref (see services/ingest/credentials.py); None when it
    has none or its source takes none (a file:// camera never gets credentials in its URL)."""
    if not entry.credentials_ref or not takes_credentials(entry.stream_url):
        return None
    try:
        return (resolver or CredentialResolver(environ=environ)).resolve(entry.credentials_ref)
    except CredentialsNotFound as error:
        raise CameraError(str(error)) from None


def url_with_credentials(url: str, credentials: str | None) -> str:
    if not credentials or not takes_credentials(url):
        return url
    user, _, password = credentials.partition(":")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, parts.fragment))


def secrets_of(url: str, credentials: str | None) -> tuple[str, ...]:
    """Every form in which a password could appear in an error message."""
    values: list[str] = []
    password = urlsplit(url).password
    if password:
        values.append(password)
    if credentials:
        values.append(credentials.partition(":")[2])
    return tuple(v for secret in values if secret for v in (secret, quote(secret, safe="")))


class CameraError(Exception):
    """A camera problem described for operators (already free of credentials)."""


_UNAUTHORIZED = re.compile(r"\b401\b|unauthorized", re.IGNORECASE)
_FORBIDDEN = re.compile(r"\b403\b|forbidden", re.IGNORECASE)
# Only the status code: FFmpeg's "Demuxer/Option/Protocol not found" are not a missing stream.
_NOT_FOUND = re.compile(r"\b404\b")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def _own_message(error: BaseException) -> str:
    """The error's own message, without the URL it names (a URL such as rtsp://h:40401/cam-0403 must
    never read as an HTTP status) and without FFmpeg's log excerpt, which libav keeps per process, not
    per thread, so under many concurrent cameras it may belong to another camera."""
    if isinstance(error, OSError) and error.strerror:
        return str(error.strerror)
    filename = getattr(error, "filename", None)
    text = str(error).replace(str(filename), "") if filename else str(error)
    return _URL.sub("<url>", text)


def describe_error(error: BaseException, secrets: tuple[str, ...], read_timeout_s: float) -> str:
    """A short, credential-free reason for a status record, classified by the error's type first and
    only then by its own message (never by the URL, never by another thread's FFmpeg log)."""
    if isinstance(error, CameraError):
        return str(error)
    name = type(error).__name__
    message = _own_message(error)
    if isinstance(error, av.error.ExitError) or "Immediate exit" in message:
        reason = f"no data for {read_timeout_s:g} s (timeout)"
    elif isinstance(error, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(error, TimeoutError):
        reason = "connection timed out"
    elif isinstance(error, av.error.HTTPUnauthorizedError) or _UNAUTHORIZED.search(message):
        reason = "authentication refused (401 Unauthorized)"
    elif isinstance(error, av.error.HTTPForbiddenError) or _FORBIDDEN.search(message):
        reason = "access forbidden (403)"
    elif isinstance(error, av.error.HTTPNotFoundError | FileNotFoundError) or _NOT_FOUND.search(message):
        reason = "stream not found (404 / no such file)"
    elif "connection refused" in message.lower():
        reason = "connection refused"
    elif "timed out" in message.lower():
        reason = "connection timed out"
    elif isinstance(error, av.error.InvalidDataError):
        reason = "invalid data in stream (not a supported video)"
    else:
        reason = f"{name}: {error!s}"
    return redact_text(reason, secrets)
