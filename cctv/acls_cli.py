"""`cctv acls plan|apply`: the least-privilege ACLs (cctv/acls.py) for a topic set, shown or applied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

# cctv.cli registers this sub-app, so its helpers are imported inside the commands (no import cycle).
BootstrapOption = Annotated[
    str | None, typer.Option("--bootstrap", "-b", help="Kafka host:port (default: CCTV_KAFKA__BOOTSTRAP_SERVERS)")
]
app = typer.Typer(
    help="Per-service and per-agency Kafka ACLs (SCRAM principals, least privilege).", no_args_is_help=True
)

DestinationOption = Annotated[
    list[str] | None,
    typer.Option("--destination", "-d", help="Agency destination (repeatable; default: the four shipped)."),
]
FromBrokerOption = Annotated[bool, typer.Option(help="Plan for the topics that exist on the broker instead.")]


def _topics(destination: list[str] | None, from_broker: bool, bootstrap: str | None) -> list[str]:
    from cctv.cli import settings
    from libs.topics import DEFAULT_DESTINATIONS, pipeline_topics

    if from_broker:
        from libs.kafka import make_admin

        return sorted(make_admin(settings(bootstrap).kafka).list_topics(timeout=10).topics)
    return [spec.name for spec in pipeline_topics(tuple(destination or DEFAULT_DESTINATIONS))]


@app.command("plan")
def plan_command(
    destination: DestinationOption = None,
    from_broker: FromBrokerOption = False,
    bootstrap: BootstrapOption = None,
    output: Annotated[str, typer.Option("--format", help="table | json | strimzi (KafkaUser YAML)")] = "table",
    cluster: Annotated[str, typer.Option(help="Strimzi Kafka cluster name (label strimzi.io/cluster).")] = "cctv",
) -> None:
    """Print every principal's grants; anything not listed is denied."""
    from cctv.acls import describe, plan, strimzi_users
    from cctv.cli import fail, show

    grants = plan(_topics(destination, from_broker, bootstrap))
    if output == "json":
        print(
            json.dumps(
                [
                    {
                        "principal": f"User:{g.principal}",
                        "resource": g.kind,
                        "name": g.name,
                        "pattern": g.pattern,
                        "operations": list(g.operations),
                    }
                    for g in grants
                ],
                indent=2,
            )
        )
    elif output == "strimzi":
        import yaml

        print(yaml.safe_dump_all(strimzi_users(grants, cluster), sort_keys=False), end="")
    elif output == "table":
        show(["principal", "resource", "pattern", "operations"], [list(row) for row in describe(grants)])
    else:
        fail(f"--format must be table, json or strimzi, got {output!r}", code=2)


@app.command("apply")
def apply_command(
    destination: DestinationOption = None,
    from_broker: FromBrokerOption = False,
    bootstrap: BootstrapOption = None,
    passwords_dir: Annotated[
        Path | None,
        typer.Option(
            help="Also create/update SCRAM-SHA-512 users: one file per principal (file name = user, content = "
            "password), e.g. mounted Kubernetes secrets."
        ),
    ] = None,
) -> None:
    """Create the ACLs (idempotent) as an administrator (CCTV_KAFKA__SASL_* of a super user)."""
    from cctv.acls import apply_acls, plan, principals, upsert_scram_users
    from cctv.cli import console, fail, settings
    from libs.kafka import make_admin

    grants = plan(_topics(destination, from_broker, bootstrap))
    admin = make_admin(settings(bootstrap).kafka)
    try:
        if passwords_dir is not None:
            wanted = principals(grants)
            passwords = {p: (passwords_dir / p).read_text().strip() for p in wanted if (passwords_dir / p).is_file()}
            missing = sorted(set(wanted) - set(passwords))
            if missing:
                fail(f"no password file in {passwords_dir} for: {', '.join(missing)}", code=2)
            upsert_scram_users(admin, passwords)
            console.print(f"{len(passwords)} SCRAM-SHA-512 users created or updated")
        count = apply_acls(admin, grants)
    except Exception as error:  # noqa: BLE001 — not authorized, broker unreachable: reported plainly
        fail(f"{type(error).__name__}: {error}")
    console.print(f"{count} ACL bindings applied for {len(principals(grants))} principals")
