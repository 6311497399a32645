"""The console's users: a YAML file of argon2 hashes, roles and camera restrictions (mounted from a
Secret in a cluster, so every replica reads the same), and the dev users `cctv up` creates."""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Role = Literal["viewer", "operator", "supervisor", "admin"]
ROLES: tuple[str, ...] = ("viewer", "operator", "supervisor", "admin")
CREDENTIALS_FILE = "console-credentials"
USERS_FILE = "console-users.yaml"
SESSION_KEY_FILE = "console-session-key"

_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the answer time the same either way, so
# timing does not reveal which user names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password_hash: str = Field(pattern=r"^\$argon2(id|i|d)\$")
    role: Role
    cameras: list[str] | None = None  # None: every camera; a list restricts the user to those ids
    display_name: str | None = None


class UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: dict[str, UserRecord]


@dataclass(frozen=True)
class User:
    name: str
    role: str
    cameras: frozenset[str] | None

    def can_see(self, camera_id: str) -> bool:
        return self.cameras is None or camera_id in self.cameras

    def public(self) -> dict[str, Any]:
        return {
            "username": self.name,
            "role": self.role,
            "cameras": None if self.cameras is None else sorted(self.cameras),
        }


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def load_users(path: Path) -> dict[str, UserRecord]:
    """Parse and validate the users file; ValueError says which user and field is wrong."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise ValueError(f"users file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"users file {path}: not valid YAML: {error}") from None
    try:
        return UsersFile.model_validate(raw).users
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise ValueError(f"users file {path}: {problems}") from None


class UserStore:
    """Reads the users file and re-reads it when it changes (a rotated Secret), without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._users: dict[str, UserRecord] = {}
        self._reload()

    def _reload(self) -> None:
        mtime = self.path.stat().st_mtime
        if mtime != self._mtime:
            self._users = load_users(self.path)
            self._mtime = mtime

    def _current(self) -> dict[str, UserRecord]:
        with self._lock:
            try:
                self._reload()
            except (OSError, ValueError):
                pass  # a half-written rotation: keep serving the last good copy
            return self._users

    def get(self, name: str) -> User | None:
        record = self._current().get(name)
        if record is None:
            return None
        return User(name, record.role, None if record.cameras is None else frozenset(record.cameras))

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password matches; None otherwise, without saying which part was wrong."""
        record = self._current().get(name)
        try:
            _hasher.verify(record.password_hash if record else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return self.get(name) if record else None


def _write_private(path: Path, text: str) -> None:
    """Create or replace a file readable by its owner only (mode 0600 from the start, never wider)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def ensure_dev_users(run_dir: Path, users: dict[str, str] | None = None) -> dict[str, str]:
    """Make sure `run_dir` holds dev logins for the console: `admin` and `operator` by default.

    Writes run_dir/console-credentials (`user:password` lines, mode 0600), run_dir/console-users.yaml
    (argon2 hashes, what the console reads) and run_dir/console-session-key. Passwords are random and
    existing users are never overwritten. Returns {user: password} of the users created by THIS call
    (empty when all existed), for the caller to print once."""
    wanted = users or {"admin": "admin", "operator": "operator"}  # user -> role
    run_dir.mkdir(parents=True, exist_ok=True)
    credentials_path, users_path = run_dir / CREDENTIALS_FILE, run_dir / USERS_FILE
    existing_lines = credentials_path.read_text().splitlines() if credentials_path.exists() else []
    known = {line.split(":", 1)[0] for line in existing_lines if ":" in line}
    store: dict[str, Any] = {"users": {}}
    if users_path.exists():
        store = yaml.safe_load(users_path.read_text()) or {"users": {}}
        store.setdefault("users", {})
    created: dict[str, str] = {}
    for name, role in wanted.items():
        if name in known and name in store["users"]:
            continue
        password = secrets.token_urlsafe(12)
        created[name] = password
        store["users"][name] = {"password_hash": hash_password(password), "role": role}
        existing_lines = [line for line in existing_lines if line.split(":", 1)[0] != name] + [f"{name}:{password}"]
    if created:
        _write_private(users_path, yaml.safe_dump(store, sort_keys=True))
        _write_private(credentials_path, "\n".join(existing_lines) + "\n")
    key_path = run_dir / SESSION_KEY_FILE
    if not key_path.exists():
        _write_private(key_path, secrets.token_urlsafe(48) + "\n")
    return created
