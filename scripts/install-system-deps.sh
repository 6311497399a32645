#!/usr/bin/env bash
# Install the Debian packages this project needs on a fresh Debian 12 (bookworm) machine. Run as root.
# Idempotent: packages already installed are left alone, and `apt-get update` runs only when
# something is missing.
#
#   GStreamer RTSP server (dev/test camera, cctv/devstack/rtsp_server.py, run by /usr/bin/python3):
#     python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-tools
#     glib-networking (its TLS backend serves rtsps://) and openssl (the test camera's certificate)
#   ffmpeg: the command-line tool serves the MJPEG-over-HTTP test camera (`-f mpjpeg -listen 1`)
#   Kafka broker from Maven Central (cctv dev stack): maven, and a Java 17 runtime when no `java` is on PATH.
#   docker-compose (1.29, offline `config -q` validation of docker-compose.yml in the tests).
#   chromium + chromium-driver: the console's browser tests (headless, driven by selenium).
#   nginx: TLS + basic-auth proxy in front of the dev/test schema registry (cctv/devstack/secure_registry.py).
#   opencv-doc is NOT installed: samples/make_samples.py only downloads its .deb to extract vtest.avi.
set -euo pipefail

if [[ "$(id -u)" -ne 0 ]]; then
    echo "install-system-deps.sh: run as root (e.g. sudo $0)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps.sh: apt-get not found; this script supports Debian/Ubuntu only" >&2
    exit 1
fi

wanted=(
    python3-gi
    gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad
    gstreamer1.0-tools
    glib-networking
    openssl
    ffmpeg
    maven
    docker-compose
    chromium
    chromium-driver
    nginx
)
if ! command -v java >/dev/null 2>&1; then
    wanted+=(openjdk-17-jre-headless)
fi

is_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == "installed" ]]
}

missing=()
for package in "${wanted[@]}"; do
    if ! is_installed "$package"; then
        missing+=("$package")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-system-deps.sh: all system packages already installed"
    exit 0
fi

echo "install-system-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

# Check that the RTSP server's Python bindings really load under the system interpreter.
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" \
    || { echo "install-system-deps.sh: GstRtspServer bindings do not import under /usr/bin/python3" >&2; exit 1; }
echo "install-system-deps.sh: done"
