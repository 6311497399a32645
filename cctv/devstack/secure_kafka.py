"""The dev broker secured as in production: SASL_SSL (SCRAM-SHA-512 over TLS) for clients, ACLs enforced.

- Client listener SASL_SSL with a certificate from the project's own CA (cctv/devstack/tls.py).
- Users are SCRAM-SHA-512; the administrator `admin` is created at format time (`--add-scram`) and is
  the only super user. Service and agency users are added later through the admin API.
- StandardAuthorizer with `allow.everyone.if.no.acl.found=false`: what is not granted is denied.
- The controller listener (loopback only) authenticates with SASL/PLAIN as `admin` too, so no
  anonymous connection can reach the controller either. SCRAM cannot be used there: controllers need it
  before the metadata log (which holds SCRAM credentials) is readable.

The administrator password is generated once and kept in the broker's home (mode 0600).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from cctv.devstack.kafka import HOST, KafkaBroker
from cctv.devstack.tls import ServerTls, ensure_server_tls

ADMIN = "admin"
SCRAM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecuredKafkaBroker(KafkaBroker):
    name = "secured-broker"

    @property
    def home(self) -> Path:
        return super().home.with_name(f"secured-node-{self.port}")

    @property
    def tls(self) -> ServerTls:
        return ensure_server_tls(self.home / "tls")

    @property
    def admin_password(self) -> str:
        path = self.home / "admin.password"
        if not path.is_file():
            self.home.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(24))
        return path.read_text().strip()

    def _properties(self) -> dict[str, str]:
        password = self.admin_password
        scram_login = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" password="{password}";'
        plain_login = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{ADMIN}" password="{password}" user_{ADMIN}="{password}";'
        )
        controller = self._controller_port()
        return super()._properties() | {
            "listeners": f"SASL_SSL://{HOST}:{self.port},CONTROLLER://{HOST}:{controller}",
            "advertised.listeners": f"SASL_SSL://{HOST}:{self.port}",
            "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": SCRAM,
            "sasl.mechanism.inter.broker.protocol": SCRAM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram_login,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain_login,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.tls.keystore_file),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.tls.ca_file),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def _write_config(self) -> Path:
        config = super()._write_config()
        config.chmod(0o600)  # it holds the administrator's password
        return config

    def _format_args(self) -> list[str]:
        return ["--add-scram", f"{SCRAM}=[name={ADMIN},password={self.admin_password}]"]

    def client_config(self, user: str = ADMIN, password: str | None = None) -> dict[str, str | int | float | bool]:
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": SCRAM,
            "sasl.username": user,
            "sasl.password": self.admin_password if password is None else password,
            "ssl.ca.location": str(self.tls.ca_file),
        }

    def service_env(self, user: str, password: str) -> dict[str, str]:
        """CCTV_KAFKA__* variables for a service connecting as `user`."""
        return {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "CCTV_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "CCTV_KAFKA__SASL_MECHANISM": SCRAM,
            "CCTV_KAFKA__SASL_USERNAME": user,
            "CCTV_KAFKA__SASL_PASSWORD": password,
            "CCTV_KAFKA__SSL_CA_LOCATION": str(self.tls.ca_file),
        }
