"""`cctv evidence verify|hold|release|list|export|frame|purge|keygen`: incident clips in object storage.

The command acts with the S3 credentials and signing/verification key it is given (CCTV_S3__*,
CCTV_EVIDENCE__*): holding those is what authorises it, so its user counts as an evidence admin. Every
hold, release, download and deletion is written to cctv.audit.v1 before it happens, under --actor
(default: $USER).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from libs.settings import ConfigError, load_settings

app = typer.Typer(
    help="Evidence clips of incidents in object storage (verify, legal hold, download).", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)

ActorOption = Annotated[str | None, typer.Option("--actor", help="Who acts, for the audit trail (default: $USER).")]
ClientOption = Annotated[str | None, typer.Option("--client", help="Client address recorded in the audit trail.")]


def _desk(with_audit: bool = True):
    from libs.evidence_audit import AuditLog
    from libs.evidence_store import EvidenceStore
    from libs.kafka import make_producer
    from libs.serde import make_serde
    from services.clip_writer.evidence import EvidenceDesk
    from services.clip_writer.settings import EvidenceCliSettings

    try:
        settings = load_settings(EvidenceCliSettings)
    except ConfigError as error:
        err_console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    try:
        public_key = settings.evidence.public_key()
    except ValueError:
        public_key = None
    audit = (
        AuditLog(make_producer(settings.kafka, "cctv-evidence"), make_serde(settings.registry)) if with_audit else None
    )
    return EvidenceDesk(EvidenceStore(settings.s3), audit, public_key)  # type: ignore[arg-type]


def _actor(name: str | None, client: str | None):
    from services.clip_writer.evidence import Actor

    return Actor(name or os.environ.get("USER") or getpass.getuser(), frozenset({"admin"}), client)


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _time(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command()
def verify(alert_id: str) -> None:
    """Re-hash every object and the manifest and check the Ed25519 signature; name every difference."""
    from libs.evidence_store import StorageUnavailable

    try:
        result = _desk(with_audit=False).verify(alert_id)
    except (ValueError, StorageUnavailable) as error:
        _fail(str(error), 2)
    for line in result.checked:
        console.print(f"[green]ok[/green]   {line}")
    for line in result.problems:
        console.print(f"[red]FAIL[/red] {line}")
    if not result.ok:
        console.print(f"[red]evidence of alert {alert_id} does NOT verify ({len(result.problems)} problem(s))[/red]")
        raise typer.Exit(1)
    console.print(f"[green]evidence of alert {alert_id} verifies[/green]")


@app.command()
def hold(
    alert_id: str,
    reason: Annotated[str, typer.Option("--reason", help="Why, e.g. the case number.")],
    actor: ActorOption = None,
    client: ClientOption = None,
) -> None:
    """Put a clip on legal hold: retention will not delete it until it is released."""
    _run(lambda desk: desk.hold(alert_id, _actor(actor, client), reason))
    console.print(f"evidence of alert {alert_id} is on legal hold ({reason})")


@app.command()
def release(
    alert_id: str,
    reason: Annotated[str, typer.Option("--reason", help="Why the hold ends.")] = "",
    actor: ActorOption = None,
    client: ClientOption = None,
) -> None:
    """End a legal hold: the clip is deleted once its retention has passed."""
    _run(lambda desk: desk.release(alert_id, _actor(actor, client), reason))
    console.print(f"legal hold on alert {alert_id} released")


@app.command("list")
def list_clips(
    camera: Annotated[str | None, typer.Option(help="Only this camera.")] = None,
    held: Annotated[bool, typer.Option("--held", help="Only clips on legal hold.")] = False,
) -> None:
    """Stored clips: alert, camera, span, objects, retention, hold."""
    rows = _run(lambda desk: desk.listing(), with_audit=False)
    table = Table("alert", "camera", "event", "clip start", "length s", "objects", "delete after", "hold")
    for row in rows:
        manifest, hold_info = row["manifest"], row["hold"]
        if (camera and manifest["camera_id"] != camera) or (held and hold_info is None):
            continue
        table.add_row(
            manifest["alert_id"],
            manifest["camera_id"],
            manifest["event_type"],
            _time(manifest["clip"]["start_us"]),
            f"{(manifest['clip']['end_us'] - manifest['clip']['start_us']) / 1e6:.1f}",
            str(len(manifest["objects"])),
            _time(manifest["retention_until_us"]),
            f"{hold_info['by']}: {hold_info['reason']}" if hold_info else "-",
        )
    console.print(table)


@app.command()
def export(
    alert_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the files.")] = Path("."),
    unmasked: Annotated[
        bool, typer.Option("--unmasked", help="The unmasked original instead of the masked copy (needs --reason).")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (case number, request): goes on the audit trail.")] = "",
    url_only: Annotated[
        bool, typer.Option("--url-only", help="Print short-lived links instead of downloading.")
    ] = False,
    actor: ActorOption = None,
    client: ClientOption = None,
) -> None:
    """A copy of the clip for release (audited): the masked copy (faces, heads, plates pixelated; made now
    if the clip writer has not yet), or with --unmasked --reason the original. Each file's sha256 is
    checked; the signed manifest (release.json or manifest.json) and its signature are written next to them."""
    from libs.evidence_access import RELEASE, RELEASE_SIGNATURE
    from libs.evidence_store import MANIFEST, SIGNATURE

    def fetch(desk):
        if not unmasked and desk.store.manifest(alert_id) is not None and desk.masked_manifest(alert_id) is None:
            _make_masked_copy(desk, alert_id, _actor(actor, client).name)
        return desk, desk.download_links(
            alert_id, _actor(actor, client), variant="original" if unmasked else "masked", reason=reason
        )

    desk, links = _run(fetch)
    for link in links:
        if url_only:
            console.print(link["url"], soft_wrap=True)
            continue
        with urllib.request.urlopen(link["url"], timeout=60) as response:
            data = response.read()
        if hashlib.sha256(data).hexdigest() != link["sha256"]:
            _fail(f"{link['key']}: downloaded bytes do not match the manifest's sha256 (run `cctv evidence verify`)")
        variant = "original" if unmasked else "masked"
        target = output / f"{alert_id}-{variant}-{Path(link['key']).name}"
        output.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        console.print(f"{target} ({len(data)} bytes, sha256 ok)")
    if not url_only:
        for name in (MANIFEST, SIGNATURE) if unmasked else (RELEASE, RELEASE_SIGNATURE):
            document = desk.store.get(desk.store.key(alert_id, name))
            if document is not None:
                (output / f"{alert_id}-{name}").write_bytes(document)
                console.print(f"{output / f'{alert_id}-{name}'} (signed manifest for the recipient)")


# The earlier name of `export`.
app.command("get", hidden=True)(export)


def _make_masked_copy(desk, alert_id: str, actor: str) -> None:
    from services.clip_writer.release import Masker, make_masked_copy
    from services.clip_writer.settings import EvidenceCliSettings

    settings = load_settings(EvidenceCliSettings)
    try:
        key = settings.evidence.private_key()
    except ValueError as error:
        raise ValueError(
            f"the masked copy of alert {alert_id} is not made yet and cannot be made here: {error}"
        ) from None
    err_console.print(f"making the masked copy of alert {alert_id} (re-encoding the clip; this takes a while)")
    make_masked_copy(desk.store, alert_id, Masker(settings.masked_copies), key, created_by=actor)


@app.command()
def frame(
    alert_id: str,
    at_us: Annotated[
        int | None, typer.Option("--at-us", help="Capture time (µs); default: the incident start.")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="JPEG file to write.")] = Path("snapshot.jpg"),
    actor: ActorOption = None,
    client: ClientOption = None,
) -> None:
    """One frame of the clip as JPEG (audited), e.g. an alert's evidence frame once cctv.frames.v1 dropped it."""

    def take(desk):
        when = at_us
        if when is None:
            manifest = desk.store.manifest(alert_id)
            when = manifest["incident"]["started_at_us"] if manifest else 0
        return desk.snapshot(alert_id, when, _actor(actor, client))

    jpeg = _run(take)
    output.write_bytes(jpeg)
    console.print(f"{output} ({len(jpeg)} bytes)")


@app.command()
def purge(actor: ActorOption = None) -> None:
    """Delete every clip past its retention that is not on hold (the clip-writer also does this hourly)."""
    deleted = _run(lambda desk: desk.sweep(actor=_actor(actor, None).name))
    console.print(f"{len(deleted)} expired clip(s) deleted" + (f": {', '.join(deleted)}" if deleted else ""))


@app.command()
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Where to write the private key (PEM, mode 0600).")],
    if_missing: Annotated[bool, typer.Option("--if-missing", help="Keep an existing key.")] = False,
) -> None:
    """Create an Ed25519 signing key for manifests; prints the public key that verifies them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.clip_writer.manifest import key_id, load_private_key

    if out.exists():
        if not if_missing:
            _fail(f"{out} exists (use --if-missing to keep it)")
        key = load_private_key(out.read_text())
    else:
        key = Ed25519PrivateKey.generate()
        out.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    console.print(f"{key_id(key.public_key())} (give the public key to verifiers as CCTV_EVIDENCE__VERIFY_KEY):")
    console.print(public.decode().strip(), soft_wrap=True)


def _run(action, with_audit: bool = True):
    from libs.evidence_access import NotFound, NotReady
    from libs.evidence_audit import AuditFailed
    from libs.evidence_store import StorageUnavailable
    from services.clip_writer.core import ClipError

    desk = _desk(with_audit)
    try:
        return action(desk)
    except (NotFound, NotReady) as error:
        _fail(str(error), 1)
    except PermissionError as error:
        _fail(f"not allowed: {error}", 3)
    except (ValueError, StorageUnavailable, AuditFailed, ClipError) as error:
        _fail(str(error), 2)


if __name__ == "__main__":
    sys.exit(app())
