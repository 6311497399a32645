"""`cctv` — the command line for operators, SREs and developers.

Every command talks to the Kafka (and registry) named by flags or the usual CCTV_* environment. This
module only composes the command groups (cctv/commands/ and the sub-apps beside it): a new group or
command is one line here.
"""

from __future__ import annotations

import typer

from cctv import acls_cli, evidence, ledger
from cctv.capacity import capacity_command
from cctv.commands import alerts, cameras, devstack, status, topics

# Re-exported: sub-apps (acls, audit, ...) take these helpers from here.
from cctv.commands.common import console, err_console, fail, settings, show
from cctv.evaluation.command import eval_command
from planner.cli import register as register_plan

__all__ = ["app", "console", "err_console", "fail", "main", "settings", "show"]

app = typer.Typer(help="City-scale intelligent CCTV platform.", no_args_is_help=True, add_completion=False)
app.add_typer(devstack.kafka_app, name="kafka")
app.add_typer(devstack.registry_app, name="registry")
app.add_typer(topics.app, name="topics")
app.add_typer(cameras.app, name="cameras")
app.add_typer(alerts.app, name="alerts")
app.add_typer(evidence.app, name="evidence")
app.add_typer(ledger.app, name="audit")
app.command("status")(status.status)
app.command("capacity")(capacity_command)
register_plan(app)  # `cctv plan`
app.command("eval")(eval_command)
app.command("up")(devstack.up)
app.command("down")(devstack.down)
app.add_typer(acls_cli.app, name="acls")


def main() -> None:
    app(prog_name="cctv")


if __name__ == "__main__":
    main()
