#!/usr/bin/python3
"""A real RTSP server that plays MP4 files as never-ending live camera streams (GStreamer gst-rtsp-server).

Run with Debian's interpreter, not the project venv (it needs the distro's PyGObject bindings):

    /usr/bin/python3 cctv/devstack/rtsp_server.py --port 8554 \
        --mount cam1=samples/vtest-h264.mp4 [--mount cam2=...] [--user U --password P] [--tls-pem FILE]

Each mount is served at rtsp://ADDRESS:PORT/NAME (rtsps:// with --tls-pem, a PEM file holding the
certificate and its private key: RTSP over TLS, as cameras with "secure RTSP" serve it). Once
listening, one line is printed to stdout:

    READY {"port": 8554, "address": "127.0.0.1", "urls": {"cam1": "rtsp://127.0.0.1:8554/cam1"}}

`--port 0` picks a free port (the READY line says which). SIGTERM or SIGINT stops the server, exit code 0.
Bad arguments or unplayable files exit with code 2 and a message on stderr before READY is printed.

How looping works: every mount has one "camera" pipeline (filesrc ! qtdemux ! appsink sync=true) that
plays the file in real time and seeks back to the start at end-of-stream, forever. Each RTSP media
gets an appsrc (is-live, do-timestamp) that this camera feeds, so timestamps keep increasing across
loops exactly like a live camera, and every client (one media each) joins at the next keyframe.
Needs: python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good (qtdemux, rtph264pay),
gstreamer1.0-plugins-bad (h264parse/h265parse). Imports only the standard library and gi.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import gi

gi.require_version("Gio", "2.0")
gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstApp, GstRtspServer  # noqa: E402 (after require_version)

# Encoded-video caps we know how to packetise, mapped to the (parser, payloader) pair.
PAYLOADERS_BY_CAPS_NAME: dict[str, tuple[str, str]] = {
    "video/x-h264": ("h264parse", "rtph264pay"),
    "video/x-h265": ("h265parse", "rtph265pay"),
}
PREROLL_TIMEOUT_S = 10
AUTH_ROLE = "camera-viewer"


class StartupError(Exception):
    """A mount cannot be served; the message says which file and why."""


@dataclass(frozen=True)
class MountSpec:
    name: str
    path: Path


def parse_mount(text: str) -> MountSpec:
    name, separator, path_text = text.partition("=")
    if not separator or not name or not path_text:
        raise argparse.ArgumentTypeError(f"--mount expects NAME=/path/to/file.mp4, got {text!r}")
    if "/" in name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise argparse.ArgumentTypeError(f"mount name {name!r} may only use letters, digits, '-', '_' and '.'")
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"mount {name!r}: file {path} does not exist")
    return MountSpec(name=name, path=path)


@dataclass
class Viewer:
    """One client's appsrc and whether it has seen its first keyframe yet."""

    appsrc: GstApp.AppSrc
    waiting_for_keyframe: bool = True


class LoopingCamera:
    """Plays one file in real time forever and pushes its encoded frames into every attached appsrc."""

    def __init__(self, mount: MountSpec) -> None:
        self.mount = mount
        self.pipeline = Gst.Pipeline.new(f"camera-{mount.name}")
        source = Gst.ElementFactory.make("filesrc")
        source.set_property("location", str(mount.path))
        demuxer = Gst.ElementFactory.make("qtdemux")
        self.sink: GstApp.AppSink = Gst.ElementFactory.make("appsink")
        # sync=true paces the camera at the file's frame rate; drop=false keeps every frame.
        self.sink.set_property("sync", True)
        self.sink.set_property("emit-signals", True)
        self.sink.set_property("max-buffers", 4)
        self.sink.set_property("caps", Gst.Caps.from_string(";".join(PAYLOADERS_BY_CAPS_NAME)))
        for element in (source, demuxer, self.sink):
            self.pipeline.add(element)
        source.link(demuxer)
        demuxer.connect("pad-added", self._on_demuxer_pad_added)
        self.sink.connect("new-sample", self._on_new_sample)
        self._viewers: dict[int, Viewer] = {}
        self._lock = threading.Lock()
        self.caps: Gst.Caps | None = None

    def _on_demuxer_pad_added(self, _demuxer: Gst.Element, pad: Gst.Pad) -> None:
        sink_pad = self.sink.get_static_pad("sink")
        if sink_pad.is_linked():
            return  # only the first video track is served
        if pad.link(sink_pad) != Gst.PadLinkReturn.OK:
            # Not H.264/H.265 (e.g. an audio track): leave it unlinked; qtdemux tolerates that.
            return

    def preroll(self) -> None:
        """Go to PAUSED and learn the stream caps, or raise StartupError with the reason."""
        bus = self.pipeline.get_bus()
        self.pipeline.set_state(Gst.State.PAUSED)
        message = bus.timed_pop_filtered(
            PREROLL_TIMEOUT_S * Gst.SECOND, Gst.MessageType.ASYNC_DONE | Gst.MessageType.ERROR | Gst.MessageType.EOS
        )
        if message is None or message.type != Gst.MessageType.ASYNC_DONE:
            reason = "timed out"
            if message is not None and message.type == Gst.MessageType.ERROR:
                error, _debug = message.parse_error()
                reason = error.message
            elif message is not None:
                reason = "no H.264/H.265 video track"
            self.pipeline.set_state(Gst.State.NULL)
            raise StartupError(
                f"mount {self.mount.name!r}: cannot play {self.mount.path} as MP4 with H.264/H.265 video ({reason})"
            )
        self.caps = self.sink.get_static_pad("sink").get_current_caps()
        if self.caps is None:
            self.pipeline.set_state(Gst.State.NULL)
            raise StartupError(f"mount {self.mount.name!r}: {self.mount.path} has no H.264/H.265 video track")
        bus.add_signal_watch()
        bus.connect("message::eos", self._on_end_of_file)
        bus.connect("message::error", self._on_error)

    def start(self) -> None:
        self.pipeline.set_state(Gst.State.PLAYING)

    def stop(self) -> None:
        self.pipeline.set_state(Gst.State.NULL)

    def payloader_description(self) -> str:
        assert self.caps is not None
        parser, payloader = PAYLOADERS_BY_CAPS_NAME[self.caps.get_structure(0).get_name()]
        return (
            f"( appsrc name=camera is-live=true do-timestamp=true format=time ! {parser} "
            f"! {payloader} name=pay0 pt=96 config-interval=-1 )"
        )

    def attach(self, appsrc: GstApp.AppSrc) -> None:
        appsrc.set_property("caps", self.caps)
        with self._lock:
            # A new viewer only gets data from the next keyframe on: it could not decode anything before.
            self._viewers[id(appsrc)] = Viewer(appsrc)

    def detach(self, appsrc: GstApp.AppSrc) -> None:
        with self._lock:
            self._viewers.pop(id(appsrc), None)

    def _on_new_sample(self, sink: GstApp.AppSink) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.EOS
        buffer = sample.get_buffer()
        is_keyframe = not buffer.has_flags(Gst.BufferFlags.DELTA_UNIT)
        with self._lock:
            viewers = list(self._viewers.items())
        if not viewers:
            return Gst.FlowReturn.OK
        # Fresh timestamps come from each appsrc (do-timestamp) so they grow across file loops.
        restamped = buffer.copy_deep()
        restamped.pts = Gst.CLOCK_TIME_NONE
        restamped.dts = Gst.CLOCK_TIME_NONE
        restamped.duration = buffer.duration
        for key, viewer in viewers:
            if viewer.waiting_for_keyframe:
                if not is_keyframe:
                    continue
                viewer.waiting_for_keyframe = False
            flow = viewer.appsrc.emit("push-buffer", restamped)
            if flow not in (Gst.FlowReturn.OK, Gst.FlowReturn.FLUSHING):
                self._forget(key)
        return Gst.FlowReturn.OK

    def _forget(self, key: int) -> None:
        with self._lock:
            self._viewers.pop(key, None)

    def _on_end_of_file(self, _bus: Gst.Bus, _message: Gst.Message) -> None:
        # Loop: a flushing seek to the start restarts real-time pacing from zero.
        if not self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0):
            print(f"rtsp_server: mount {self.mount.name!r}: seek to start failed", file=sys.stderr, flush=True)

    def _on_error(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        error, debug = message.parse_error()
        print(f"rtsp_server: mount {self.mount.name!r}: {error.message} ({debug})", file=sys.stderr, flush=True)


class CameraMediaFactory(GstRtspServer.RTSPMediaFactory):
    """A live media per client, all fed by the mount's LoopingCamera (so each client starts at a keyframe)."""

    def __init__(self, camera: LoopingCamera) -> None:
        super().__init__()
        self.camera = camera
        self.set_launch(camera.payloader_description())
        # Not shared: a media per client, so each one starts at a keyframe and gets its own timeline.
        self.set_shared(False)
        self.connect("media-configure", self._on_media_configure)

    def _on_media_configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name("camera")
        self.camera.attach(appsrc)
        media.connect("unprepared", lambda _media: self.camera.detach(appsrc))


def build_server(
    mounts: list[MountSpec],
    address: str,
    port: int,
    user: str | None,
    password: str | None,
    tls_pem: Path | None = None,
) -> tuple[GstRtspServer.RTSPServer, list[LoopingCamera]]:
    server = GstRtspServer.RTSPServer()
    server.set_address(address)
    server.set_service(str(port))
    # The default pool runs every client on one thread; a client waiting for its first keyframe
    # would then stall all the others, so give each client its own thread.
    server.get_thread_pool().set_max_threads(-1)
    restricted = user is not None and password is not None
    if restricted or tls_pem is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, AUTH_ROLE)
        if restricted:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        else:
            auth.set_default_token(token)  # TLS only: anyone may watch, over an encrypted connection
        if tls_pem is not None:
            try:
                auth.set_tls_certificate(Gio.TlsCertificate.new_from_file(str(tls_pem)))
            except GLib.Error as error:
                raise StartupError(
                    f"--tls-pem {tls_pem}: not a PEM certificate with its private key ({error.message})"
                ) from error
        server.set_auth(auth)
    cameras: list[LoopingCamera] = []
    mount_points = server.get_mount_points()
    for mount in mounts:
        camera = LoopingCamera(mount)
        camera.preroll()
        factory = CameraMediaFactory(camera)
        if restricted or tls_pem is not None:
            role = Gst.Structure.new_from_string(
                f"{AUTH_ROLE}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
            factory.add_role_from_structure(role)
        mount_points.add_factory(f"/{mount.name}", factory)
        cameras.append(camera)
    return server, cameras


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve MP4 files as looping live RTSP cameras.")
    parser.add_argument("--address", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8554, help="TCP port; 0 picks a free one (default 8554)")
    parser.add_argument("--mount", type=parse_mount, action="append", required=True, metavar="NAME=FILE.mp4")
    parser.add_argument("--user", help="require RTSP basic auth with this user name")
    parser.add_argument("--password", help="password for --user")
    parser.add_argument("--tls-pem", type=Path, help="serve RTSP over TLS (rtsps://) with this certificate + key")
    args = parser.parse_args(argv)
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password must be given together")
    names = [mount.name for mount in args.mount]
    if len(set(names)) != len(names):
        parser.error(f"mount names must be unique, got {names}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")

    Gst.init(None)
    missing = [
        name
        for name in ("qtdemux", "appsink", "appsrc", "h264parse", "rtph264pay")
        if Gst.ElementFactory.find(name) is None
    ]
    if missing:
        print(
            f"rtsp_server: GStreamer elements missing: {missing}; run scripts/install-system-deps.sh", file=sys.stderr
        )
        return 2
    try:
        server, cameras = build_server(args.mount, args.address, args.port, args.user, args.password, args.tls_pem)
    except StartupError as error:
        print(f"rtsp_server: {error}", file=sys.stderr)
        return 2

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {args.address}:{args.port} (port in use?)", file=sys.stderr)
        return 2
    for camera in cameras:
        camera.start()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal_number, lambda: (loop.quit(), GLib.SOURCE_REMOVE)[1])
    bound_port = server.get_bound_port()
    scheme = "rtsps" if args.tls_pem else "rtsp"
    urls = {mount.name: f"{scheme}://{args.address}:{bound_port}/{mount.name}" for mount in args.mount}
    print("READY " + json.dumps({"port": bound_port, "address": args.address, "urls": urls}), flush=True)
    loop.run()
    for camera in cameras:
        camera.stop()
    print("STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
