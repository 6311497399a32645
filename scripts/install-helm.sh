#!/usr/bin/env bash
# Builds a real Helm binary from source into <repo>/.cache/bin/helm when it is missing.
# Why from source: this project's machines reach the Go module proxy but no download site,
# so `go install` is the one way to get an authentic, pinned helm.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${REPO_ROOT}/.cache/bin"
HELM_BIN="${BIN_DIR}/helm"

if [[ -x "${HELM_BIN}" ]]; then
  echo "helm already present: ${HELM_BIN} ($("${HELM_BIN}" version --short 2>/dev/null || echo unknown))"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
    if [[ -x "${candidate}" ]]; then PATH="$(dirname "${candidate}"):${PATH}"; break; fi
  done
fi
if ! command -v go >/dev/null 2>&1; then
  echo "error: Go toolchain not found; install Go (helm v3.22.0 needs Go >= 1.26; older Go fetches that toolchain itself via GOTOOLCHAIN=auto) or put helm ${HELM_VERSION} at ${HELM_BIN}" >&2
  exit 1
fi

mkdir -p "${BIN_DIR}"
# Go's module and build caches stay in their default places (outside the repository).
export GOBIN="${BIN_DIR}"
export CGO_ENABLED=0
echo "building helm ${HELM_VERSION} with $(go version) into ${BIN_DIR} (takes a few minutes)"
# Stamp the same link-time variables helm's own Makefile does: the version (for `helm version`)
# and the default Kubernetes version that `helm template`/`lint` assume without --kube-version
# (derived from the k8s.io/client-go that this helm release builds against).
helm_gomod="$(go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | sed -n -E 's/^[[:space:]]*"GoMod": "([^"]+)".*/\1/p')"
client_go_version="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "${helm_gomod}")"   # e.g. v0.35.1
k8s_minor="$(echo "${client_go_version}" | cut -d. -f2)"
if [[ -z "${k8s_minor}" ]]; then
  echo "error: could not read k8s.io/client-go's version from ${helm_gomod}" >&2
  exit 1
fi
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
for package in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldflags+=" -X ${package}.k8sVersionMajor=1 -X ${package}.k8sVersionMinor=${k8s_minor}"
done
go install -trimpath -ldflags "${ldflags}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
"${HELM_BIN}" version --short
