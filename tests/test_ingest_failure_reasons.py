"""Why a camera fails, as operators read it: classified by the error, never by digits in its URL or by
another camera's FFmpeg log (issue 20, item 7: refused cameras reported as 401/403/404)."""

from __future__ import annotations

import threading

import av

from libs.cameras import CameraEntry
from services.ingest.core import (
    CameraPuller,
    PullSettings,
    StatusChange,
    describe_error,
)
from tests.kafka_helpers import refusing_port, wait_for

FAST = PullSettings(open_timeout_s=2, read_timeout_s=2, backoff_initial_s=0.05, backoff_max_s=0.2)


def test_refused_connection_is_not_read_as_http_status_from_its_url() -> None:
    with refusing_port() as port:
        for url in (
            f"rtsp://127.0.0.1:{port}/cam-0401",
            f"rtsp://127.0.0.1:{port}/site403/cam",
            f"http://127.0.0.1:{port}/404.mp4",
            f"rtsp://127.0.0.1:{port}/unauthorized-lobby",
        ):
            try:
                av.open(url, timeout=(2, 2))
            except Exception as error:  # noqa: BLE001 — the real FFmpeg error is what is classified
                assert describe_error(error, (), 2) == "connection refused", (url, repr(error))
            else:
                raise AssertionError(f"{url} opened on a refusing port")


def test_http_status_errors_are_classified_by_type() -> None:
    url = "rtsp://10.0.0.1:40401/cam-0404"
    cases = {
        av.error.HTTPUnauthorizedError(
            -1, "Server returned 401 Unauthorized (authorization failed)", url
        ): "authentication refused (401 Unauthorized)",
        av.error.HTTPForbiddenError(-1, "Server returned 403 Forbidden (access denied)", url): "access forbidden (403)",
        av.error.HTTPNotFoundError(-1, "Server returned 404 Not Found", url): "stream not found (404 / no such file)",
        av.error.ConnectionRefusedError(111, "Connection refused", url): "connection refused",
        # The libav log excerpt is process-wide: another camera's 401 must not relabel this refusal.
        av.error.ConnectionRefusedError(
            111, "Connection refused", url, log=(16, "rtsp", "method DESCRIBE failed: 401 Unauthorized")
        ): "connection refused",
        # FFmpeg's "Demuxer not found" is an unsupported format, not a missing stream.
        av.error.DemuxerNotFoundError(-1, "Demuxer not found", url): "DemuxerNotFoundError: "
        f"[Errno -1] Demuxer not found: '{url}'",
    }
    for error, expected in cases.items():
        assert describe_error(error, (), 2) == expected, repr(error)


def test_many_concurrent_refused_cameras_all_report_connection_refused() -> None:
    """The storm of the issue, small: cameras failing together on loopback, ids and ports full of 40x."""
    changes: list[StatusChange] = []
    lock = threading.Lock()

    def record(change: StatusChange) -> None:
        with lock:
            changes.append(change)

    with refusing_port() as port:
        pullers = [
            CameraPuller(
                CameraEntry(camera_id=f"cam-{i:05d}", stream_url=f"rtsp://127.0.0.1:{port}/cam-40{i % 10}{i}"),
                lambda _p: None,
                record,
                FAST,
            ).start()
            for i in range(120)
        ]
        try:

            def failures() -> list[StatusChange]:
                with lock:
                    return [c for c in changes if c.state == "FAILED"]

            wait_for(lambda: len(failures()) >= 600, 60, "five failures per camera")
        finally:
            for puller in pullers:
                puller.stop()
            for puller in pullers:
                assert puller.join(10)
    reasons = {c.reason.split(";")[0] for c in changes if c.state == "FAILED" and c.reason}
    assert reasons == {"connection refused"}, reasons
