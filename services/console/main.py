"""cctv-console: the control-room web app (http://127.0.0.1:8080 by default).

cctv-console                         # users and session key from CCTV_USERS_FILE / CCTV_SESSION_KEY(_FILE)
cctv-console --dev-users run/        # create dev logins admin + operator in run/ (printed once)
cctv-console hash-password           # argon2 hash for a users file (reads the password from stdin)
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import signal
import sys
from pathlib import Path

import uvicorn

from libs.health import Health
from libs.kafka import missing_topics, wait_for_broker
from libs.logs import setup_logging
from libs.serde import make_serde
from libs.settings import ConfigError, ignored_environment, load_settings
from services.console.app import create_app
from services.console.auth import Signer
from services.console.feeds import NEEDED_TOPICS, ConsoleFeeds
from services.console.incidents import IncidentBook
from services.console.settings import ConsoleSettings
from services.console.state import ConsoleState
from services.console.users import (
    CREDENTIALS_FILE,
    SESSION_KEY_FILE,
    USERS_FILE,
    UserStore,
    ensure_dev_users,
    hash_password,
)

SERVICE = "console"
log = logging.getLogger(SERVICE)


def _hash_password_command() -> int:
    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("password: ")
    if len(password) < 12:
        print("refusing a password shorter than 12 characters", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="cctv-console", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs="?", choices=["serve", "hash-password"], default="serve")
    parser.add_argument(
        "--dev-users",
        type=Path,
        metavar="DIR",
        help="create dev logins (admin, operator) with random passwords in DIR and use them",
    )
    args = parser.parse_args(argv)
    if args.command == "hash-password":
        raise SystemExit(_hash_password_command())
    if args.dev_users is not None:
        os.environ["CCTV_DEV_USERS_DIR"] = str(args.dev_users)
    try:
        settings = load_settings(ConsoleSettings)
    except ConfigError as error:
        print(f"{SERVICE}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(SERVICE, settings.log)
    for problem in ignored_environment(ConsoleSettings):
        log.warning("%s", problem)
    if settings.dev_users_dir is not None:
        created = ensure_dev_users(settings.dev_users_dir)
        for name, password in created.items():
            # Printed once, to the terminal that started it; also in the 0600 credentials file.
            print(
                f"console login created: {name} / {password}  (saved in {settings.dev_users_dir / CREDENTIALS_FILE})",
                file=sys.stderr,
            )
        users_file = settings.users_file or settings.dev_users_dir / USERS_FILE
        key_file = settings.session_key_file or settings.dev_users_dir / SESSION_KEY_FILE
        settings = settings.model_copy(update={"users_file": users_file, "session_key_file": key_file})
    assert settings.users_file is not None
    try:
        users = UserStore(settings.users_file)
        signer = Signer(settings.read_session_key(), settings.session_max_age_s, settings.token_max_age_s)
    except (OSError, ValueError) as error:
        print(f"{SERVICE}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    wait_for_broker(settings.kafka, timeout_s=60)
    missing = missing_topics(settings.kafka, NEEDED_TOPICS)
    if missing:
        print(f"{SERVICE}: topics missing: {', '.join(missing)} (run `cctv topics create`)", file=sys.stderr)
        raise SystemExit(2)
    health = Health(settings.http.liveness_timeout_s)
    state = ConsoleState(IncidentBook(settings.max_incidents), audit_keep=settings.audit_keep)
    feeds = ConsoleFeeds(settings, make_serde(settings.registry), health, state).start()
    app = create_app(settings, state, feeds, users, signer, health)
    log.info(
        "console on http://%s:%d (kafka %s)", settings.http.host, settings.http.port, settings.kafka.bootstrap_servers
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.http.host,
            port=settings.http.port,
            log_level="warning",
            access_log=False,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            timeout_graceful_shutdown=5,
        )
    )  # open event streams never finish on their own
    # uvicorn re-raises SIGTERM after its graceful stop (exit -15); like the other services, a requested
    # stop is a clean exit 0, so the signals only ask the server to finish.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]

    def stop(_signum: int, _frame: object) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.run()
    finally:
        feeds.stop()


if __name__ == "__main__":
    main()
