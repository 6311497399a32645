"""Stateless sessions and API tokens (signed with the shared session key, so any replica accepts
them), CSRF for cookie-authenticated writes, and what each role may do."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SESSION_COOKIE = "cctv_session"
CSRF_HEADER = "X-CSRF-Token"

# What each role may do; every role may watch (within its camera restriction).
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"view"}),
    "operator": frozenset({"view", "act"}),
    "supervisor": frozenset({"view", "act", "reopen", "audit"}),
    "admin": frozenset({"view", "act", "reopen", "audit"}),
}


def allowed(role: str, permission: str) -> bool:
    return permission in PERMISSIONS.get(role, frozenset())


def permission_for_action(action: str) -> str:
    return "reopen" if action == "reopen" else "act"


@dataclass(frozen=True)
class Credential:
    username: str
    csrf: str | None  # set for browser sessions: writes must echo it in X-CSRF-Token
    via: str  # "session" | "token"


class Signer:
    """Signs and checks session cookies and bearer tokens with the session key (a Secret)."""

    def __init__(self, key: str, session_max_age_s: int, token_max_age_s: int) -> None:
        self._sessions = URLSafeTimedSerializer(key, salt="cctv-console-session")
        self._tokens = URLSafeTimedSerializer(key, salt="cctv-console-api-token")
        self.session_max_age_s = session_max_age_s
        self.token_max_age_s = token_max_age_s

    def new_session(self, username: str) -> tuple[str, str]:
        """(cookie value, csrf token)."""
        csrf = secrets.token_urlsafe(24)
        return self._sessions.dumps({"u": username, "c": csrf}), csrf

    def new_token(self, username: str) -> str:
        return self._tokens.dumps({"u": username, "n": secrets.token_urlsafe(8)})

    def read_session(self, cookie: str) -> Credential | None:
        try:
            data = self._sessions.loads(cookie, max_age=self.session_max_age_s)
        except (BadSignature, SignatureExpired):
            return None
        return Credential(data["u"], data["c"], "session")

    def read_token(self, token: str) -> Credential | None:
        try:
            data = self._tokens.loads(token, max_age=self.token_max_age_s)
        except (BadSignature, SignatureExpired):
            return None
        return Credential(data["u"], None, "token")


def csrf_ok(credential: Credential, header_value: str | None) -> bool:
    """Bearer tokens are not sent by browsers on their own, so only cookie sessions need the check."""
    if credential.via == "token":
        return True
    if not header_value or credential.csrf is None:
        return False
    return hmac.compare_digest(credential.csrf, header_value)
