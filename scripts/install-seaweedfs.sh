#!/usr/bin/env bash
# Builds a real SeaweedFS `weed` binary (the project's S3-compatible object store for `make run`
# and the tests) from the Go module proxy into ${CCTV_S3_CACHE:-$HOME/.cache/cctv-s3}/bin/weed.
# Why a wrapper module: `go install github.com/seaweedfs/seaweedfs/weed@...` is refused because
# seaweedfs's go.mod has a replace directive; a wrapper module repeating that replace builds it.
# Why outside the clone: the cold build takes ~10 min on 2 cores, a fresh clone on the same
# machine (CI) reuses the binary.
set -euo pipefail

SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
CACHE_DIR="${CCTV_S3_CACHE:-${HOME}/.cache/cctv-s3}"
BIN_DIR="${CACHE_DIR}/bin"
WEED_BIN="${BIN_DIR}/weed"
STAMP="${BIN_DIR}/weed.version"

if [[ -x "${WEED_BIN}" && -f "${STAMP}" && "$(cat "${STAMP}")" == "${SEAWEEDFS_VERSION}" ]]; then
  echo "seaweedfs already present: ${WEED_BIN} (${SEAWEEDFS_VERSION})"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
    if [[ -x "${candidate}" ]]; then PATH="$(dirname "${candidate}"):${PATH}"; break; fi
  done
fi
if ! command -v go >/dev/null 2>&1; then
  echo "error: Go toolchain not found; install Go >= 1.24 or put a seaweedfs weed binary at ${WEED_BIN} and '${SEAWEEDFS_VERSION}' into ${STAMP}" >&2
  exit 1
fi

mkdir -p "${BIN_DIR}"
WRAPPER="${CACHE_DIR}/wrapper-${SEAWEEDFS_VERSION}"
mkdir -p "${WRAPPER}"
# One build at a time (make test in two clones at once would double the 2+ GB peak).
exec 9>"${CACHE_DIR}/build.lock"
flock 9
if [[ -x "${WEED_BIN}" && -f "${STAMP}" && "$(cat "${STAMP}")" == "${SEAWEEDFS_VERSION}" ]]; then
  echo "seaweedfs built by a concurrent run: ${WEED_BIN}"
  exit 0
fi

cat > "${WRAPPER}/go.mod" <<GOMOD
module cctv.local/seaweedfs-wrapper

go 1.24

require github.com/seaweedfs/seaweedfs ${SEAWEEDFS_VERSION}

replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0
GOMOD
cat > "${WRAPPER}/tools.go" <<'GOSRC'
//go:build tools

package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
GOSRC

echo "building seaweedfs ${SEAWEEDFS_VERSION} with $(go version) into ${BIN_DIR} (~10 min cold on 2 cores)"
cd "${WRAPPER}"
export CGO_ENABLED=0
go build -mod=mod -trimpath -ldflags '-s -w' -o "${WEED_BIN}.tmp" github.com/seaweedfs/seaweedfs/weed
mv "${WEED_BIN}.tmp" "${WEED_BIN}"
echo "${SEAWEEDFS_VERSION}" > "${STAMP}"
"${WEED_BIN}" version
