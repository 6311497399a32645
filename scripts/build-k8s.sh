#!/usr/bin/env bash
# Builds a real Kubernetes control plane for the tests: etcd, kube-apiserver and
# kube-controller-manager (and kubectl where none is installed), pinned versions, from the Go
# module proxy only (no download sites).
# The binaries go OUTSIDE the clone (default ~/.cache/cctv-k8s/bin-v<version>) so every fresh
# clone on the same machine reuses them; the cold build (~12-15 min on 2 cores) is a one-time cost.
#
# Env: CCTV_K8S_CACHE [~/.cache/cctv-k8s]  K8S_VERSION [1.37.2]  ETCD_VERSION [3.7.3]
#      K8S_BUILD_NICE [10] (niceness of the compile, so a shared machine stays usable)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.7.3}"
CACHE="${CCTV_K8S_CACHE:-${HOME}/.cache/cctv-k8s}"
BIN="${CACHE}/bin-v${K8S_VERSION}"
NICE="${K8S_BUILD_NICE:-10}"
say() { echo "[build-k8s $(date -u +%T)] $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
    if [[ -x "${candidate}" ]]; then PATH="$(dirname "${candidate}"):${PATH}"; break; fi
  done
fi
command -v go >/dev/null 2>&1 || { say "error: Go >= 1.26 is needed to build kube-apiserver v${K8S_VERSION}"; exit 1; }

mkdir -p "${BIN}"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
export CGO_ENABLED=0

# One build at a time per cache: a second `make test` waits instead of compiling twice.
exec 9>"${CACHE}/build.lock"
flock 9

k8s_targets=()
for binary in kube-apiserver kube-controller-manager; do
  [[ -x "${BIN}/${binary}" ]] || k8s_targets+=("${binary}")
done
# The tests drive the API server with kubectl: build a matching one only where none is installed.
if ! command -v kubectl >/dev/null 2>&1 && [[ ! -x "${BIN}/kubectl" ]]; then
  k8s_targets+=(kubectl)
fi

if (( ${#k8s_targets[@]} )); then
  # k8s.io/kubernetes replaces its staging modules with ./staging paths, which `go install pkg@v`
  # refuses; a small wrapper module pins each staging module to its published v0.<minor>.<patch>.
  wrapper="${CACHE}/wrapper-k8s-v${K8S_VERSION}"
  mkdir -p "${wrapper}"
  if [[ ! -f "${wrapper}/go.mod" ]]; then
    say "resolving the staging modules of k8s.io/kubernetes v${K8S_VERSION}"
    upstream_gomod="$(cd "${wrapper}" && go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" \
      | sed -n -E 's/^[[:space:]]*"GoMod": "([^"]+)".*/\1/p')"
    staging="v0.${K8S_VERSION#1.}"
    {
      printf 'module cctv.local/k8sbuild\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "${K8S_VERSION}"
      sed -n '/^replace (/,/^)/p' "${upstream_gomod}" | awk -v v="${staging}" '/=>/ { printf "\t%s => %s %s\n", $1, $1, v }'
      printf ')\n'
    } > "${wrapper}/go.mod.tmp"
    printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n)\n' > "${wrapper}/tools.go"
    mv "${wrapper}/go.mod.tmp" "${wrapper}/go.mod"
  fi
  major="${K8S_VERSION%%.*}"; minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  # Without these the server reports v0.0.0-master and clients mis-negotiate features.
  ldflags="-s -w"
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${package}.gitVersion=v${K8S_VERSION} -X ${package}.gitMajor=${major}"
    ldflags+=" -X ${package}.gitMinor=${minor} -X ${package}.gitTreeState=clean"
  done
  packages=()
  for binary in "${k8s_targets[@]}"; do packages+=("k8s.io/kubernetes/cmd/${binary}"); done
  say "building ${k8s_targets[*]} v${K8S_VERSION} into ${BIN} (one-time; ~12-15 min on 2 cores)"
  start=${SECONDS}
  (cd "${wrapper}" && nice -n "${NICE}" go build -mod=mod -trimpath -ldflags "${ldflags}" -o "${BIN}/" "${packages[@]}")
  say "built ${k8s_targets[*]} in $((SECONDS - start)) s"
fi

if [[ ! -x "${BIN}/etcd" ]]; then
  wrapper="${CACHE}/wrapper-etcd-v${ETCD_VERSION}"
  mkdir -p "${wrapper}"
  printf 'module cctv.local/etcdbuild\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' "${ETCD_VERSION}" > "${wrapper}/go.mod"
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > "${wrapper}/main.go"
  say "building etcd v${ETCD_VERSION}"
  start=${SECONDS}
  (cd "${wrapper}" && nice -n "${NICE}" go build -mod=mod -trimpath -ldflags "-s -w" -o "${BIN}/etcd" .)
  say "built etcd in $((SECONDS - start)) s"
fi

say "control plane binaries ready in ${BIN}"
