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
    "supervisor": frozenset({"view", "act", "reopen", "audit", "share"}),
    "admin": frozenset({"view", "act", "reopen", "audit", "share"}),
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


class LoginThrottle:
    """Refuses logins for a while after repeated failures for the same key (the user name): password
    guessing. Per replica: behind N replicas a guesser gets at most N times the budget."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, lockout_s: float = 300.0) -> None:
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}

    def retry_after(self, keys: tuple[str, ...], now: float) -> float:
        """Seconds until a login for these keys (user name, address) may be tried again; 0 = now."""
        return max([self._locked_until.get(key, 0.0) - now for key in keys] + [0.0])

    def failed(self, keys: tuple[str, ...], now: float) -> None:
        for key in keys:
            recent = [t for t in self._failures.get(key, []) if now - t < self.window_s] + [now]
            self._failures[key] = recent
            if len(recent) >= self.max_failures:
                self._locked_until[key] = now + self.lockout_s
                self._failures.pop(key, None)
        if len(self._failures) > 100_000:  # bounded memory under a spray of random names
            self._failures.clear()

    def succeeded(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self._failures.pop(key, None)
