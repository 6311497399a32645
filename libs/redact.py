"""Credentials never leave the process: URLs and free text are scrubbed before logging or publishing."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# scheme://user:password@host or scheme://user@host — the userinfo part is what we hide.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
# password=..., passwd=..., pwd=..., token=... in query strings and messages.
_SECRET_PARAM = re.compile(r"(?i)\b(password|passwd|pwd|token|secret|api[_-]?key)=([^&\s]+)")


def redact_url(url: str) -> str:
    """The URL with any user:password replaced by '***' (host, path and port kept for diagnosis)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.username is None and parts.password is None:
        return redact_text(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return redact_text(urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment)))


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Scrub userinfo in any URL in the text, secret-looking parameters, and any known secret values."""
    cleaned = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    cleaned = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", cleaned)
    for secret in secrets:
        if secret:
            cleaned = cleaned.replace(secret, "***")
    return cleaned
