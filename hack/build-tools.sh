#!/usr/bin/env bash
# Builds the binaries the end-to-end tests, the sandbox and `make lint` need
# into bin/:
#
#   bin/kube-apiserver  k8s.io/kubernetes/cmd/kube-apiserver  (tools/go.mod)
#   bin/kube-scheduler  k8s.io/kubernetes/cmd/kube-scheduler  (tools/go.mod)
#   bin/kube-controller-manager
#                       k8s.io/kubernetes/cmd/kube-controller-manager (tools/go.mod)
#   bin/kubectl         k8s.io/kubernetes/cmd/kubectl         (tools/go.mod)
#   bin/helm            helm.sh/helm/v3/cmd/helm              (tools/go.mod)
#   bin/etcd            go.etcd.io/etcd/server/v3             (tools/etcd/go.mod)
#   bin/kwok            sigs.k8s.io/kwok/cmd/kwok             (tools/kwok/go.mod)
#   bin/staticcheck     honnef.co/go/tools/cmd/staticcheck    (tools/staticcheck/go.mod)
#   bin/cert-manager    ./tools/cert-manager, cert-manager's controllers and
#                       cainjector as a library               (tools/cert-manager/go.mod)
#
# Versions are pinned by the go.mod files under tools/ and everything is
# fetched from the Go module proxy. A binary is (re)built only when it is
# missing, older than the go.mod/go.sum it is built from, or its entry in
# bin/.tools-stamp does not match the current go.mod/go.sum/build flags
# (and, for tools/cert-manager, its Go source).
#
# Usage: bash hack/build-tools.sh [kube-apiserver|kube-scheduler|kube-controller-manager|kubectl|etcd|kwok|helm|staticcheck|cert-manager ...]
#        FORCE=1 bash hack/build-tools.sh    # rebuild regardless
#
# Builds run one at a time under `nice -n 10` and reuse the normal Go build
# cache, so only the first build is slow.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${REPO_ROOT}/tools"
BIN_DIR="${REPO_ROOT}/bin"
STAMP_FILE="${BIN_DIR}/.tools-stamp"

ALL_TOOLS=(kube-apiserver kube-scheduler kube-controller-manager kubectl etcd kwok helm staticcheck cert-manager)

# tool -> module directory (relative to tools/), Go package, module shown in
# messages, and a rough first-build estimate on 2 cores.
tool_dir() {
  case "$1" in
    etcd) echo "${TOOLS_DIR}/etcd" ;;
    kwok) echo "${TOOLS_DIR}/kwok" ;;
    staticcheck) echo "${TOOLS_DIR}/staticcheck" ;;
    cert-manager) echo "${TOOLS_DIR}/cert-manager" ;;
    *) echo "${TOOLS_DIR}" ;;
  esac
}
tool_pkg() {
  case "$1" in
    kube-apiserver) echo "k8s.io/kubernetes/cmd/kube-apiserver" ;;
    kube-scheduler) echo "k8s.io/kubernetes/cmd/kube-scheduler" ;;
    kube-controller-manager) echo "k8s.io/kubernetes/cmd/kube-controller-manager" ;;
    kubectl) echo "k8s.io/kubernetes/cmd/kubectl" ;;
    etcd) echo "go.etcd.io/etcd/server/v3" ;;
    kwok) echo "sigs.k8s.io/kwok/cmd/kwok" ;;
    helm) echo "helm.sh/helm/v3/cmd/helm" ;;
    staticcheck) echo "honnef.co/go/tools/cmd/staticcheck" ;;
    cert-manager) echo "." ;;
  esac
}
tool_module() {
  case "$1" in
    kube-apiserver | kube-scheduler | kube-controller-manager | kubectl) echo "k8s.io/kubernetes" ;;
    etcd) echo "go.etcd.io/etcd/server/v3" ;;
    kwok) echo "sigs.k8s.io/kwok" ;;
    helm) echo "helm.sh/helm/v3" ;;
    staticcheck) echo "honnef.co/go/tools" ;;
    cert-manager) echo "github.com/cert-manager/cert-manager" ;;
  esac
}
tool_estimate() {
  case "$1" in
    kube-apiserver) echo "about 10 minutes the first time on 2 cores" ;;
    kube-scheduler) echo "about 2-3 minutes after kube-apiserver on 2 cores" ;;
    kube-controller-manager) echo "about 3 minutes after kube-apiserver on 2 cores" ;;
    kubectl) echo "about 4 minutes the first time on 2 cores, under 1 after kube-apiserver" ;;
    etcd) echo "about 1-2 minutes the first time on 2 cores" ;;
    kwok) echo "about 4 minutes the first time on 2 cores" ;;
    helm) echo "about 3 minutes the first time on 2 cores, under 1 after kube-apiserver" ;;
    staticcheck) echo "under 1 minute the first time on 2 cores" ;;
    cert-manager) echo "about 4-5 minutes the first time on 2 cores" ;;
  esac
}

# Version of a module as selected (after replace directives) in a tools module.
mod_version() {
  (cd "$1" && GOWORK=off go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' "$2")
}

# -ldflags so the binaries report their real versions: built from the module
# cache they would otherwise say v0.0.0-master (kubernetes) or v3.22 (helm).
tool_ldflags() {
  local tool=$1 dir version
  dir=$(tool_dir "${tool}")
  version=$(mod_version "${dir}" "$(tool_module "${tool}")")
  case "${tool}" in
    kube-apiserver | kube-scheduler | kube-controller-manager | kubectl)
      local major minor rest flags=() pkg
      major=${version#v}; major=${major%%.*}
      rest=${version#v*.}; minor=${rest%%.*}
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        # gitCommit would otherwise read "$Format:%H$"; the commit is unknown.
        flags+=("-X ${pkg}.gitVersion=${version}" "-X ${pkg}.gitCommit="
          "-X ${pkg}.gitMajor=${major}"
          "-X ${pkg}.gitMinor=${minor}")
      done
      echo "-s -w ${flags[*]}"
      ;;
    helm)
      # helm's Makefile also stamps the Kubernetes version it was built
      # against (client-go v0.X.Y -> 1.X) into lint rules and chartutil.
      local k8s k8s_minor
      k8s=$(mod_version "${dir}" k8s.io/client-go)
      k8s_minor=${k8s#v0.}; k8s_minor=${k8s_minor%%.*}
      echo "-s -w -X helm.sh/helm/v3/internal/version.version=${version}" \
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1" \
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${k8s_minor}" \
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1" \
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${k8s_minor}"
      ;;
    cert-manager)
      # cert-manager's user agent and logs would otherwise say "canary".
      echo "-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion=${version}"
      ;;
    etcd | kwok | staticcheck)
      # etcd's and kwok's versions are constants in their source
      # (go.etcd.io/etcd/api/v3/version, sigs.k8s.io/kwok/pkg/consts);
      # staticcheck reads its own from the module's build info.
      echo "-s -w"
      ;;
  esac
}

# Hash of everything that determines a tool's binary.
tool_hash() {
  local tool=$1 dir
  dir=$(tool_dir "${tool}")
  {
    echo "${tool} $(tool_pkg "${tool}")"
    tool_ldflags "${tool}"
    cat "${dir}/go.mod" "${dir}/go.sum"
    # A tool of our own (cert-manager) is also built from its source.
    if [[ "$(tool_pkg "${tool}")" == . ]]; then cat "${dir}"/*.go; fi
  } | sha256sum | cut -d' ' -f1
}

stamp_of() {
  [[ -f "${STAMP_FILE}" ]] || return 0
  awk -v t="$1" '$1 == t { print $2 }' "${STAMP_FILE}"
}

write_stamp() {
  local tool=$1 hash=$2 tmp
  tmp=$(mktemp "${STAMP_FILE}.XXXXXX")
  if [[ -f "${STAMP_FILE}" ]]; then
    awk -v t="${tool}" '$1 != t' "${STAMP_FILE}" >"${tmp}"
  fi
  echo "${tool} ${hash}" >>"${tmp}"
  chmod 644 "${tmp}"
  mv "${tmp}" "${STAMP_FILE}"
}

# Prints why a tool needs building, or nothing if it is up to date.
outdated_reason() {
  local tool=$1 hash=$2 bin dir
  bin="${BIN_DIR}/${tool}"
  dir=$(tool_dir "${tool}")
  if [[ "${FORCE:-}" == 1 ]]; then echo "FORCE=1"; return; fi
  if [[ ! -x "${bin}" ]]; then echo "missing"; return; fi
  if [[ "${dir}/go.mod" -nt "${bin}" || "${dir}/go.sum" -nt "${bin}" ]]; then
    echo "older than ${dir#"${REPO_ROOT}/"}/go.mod or go.sum"; return
  fi
  if [[ "$(stamp_of "${tool}")" != "${hash}" ]]; then echo "stamp changed"; return; fi
}

fmt_duration() {
  local s=$1
  if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "${s}"; fi
}

main() {
  local tools=("$@") tool known
  if ((${#tools[@]} == 0)); then tools=("${ALL_TOOLS[@]}"); fi
  for tool in "${tools[@]}"; do
    known=0
    for t in "${ALL_TOOLS[@]}"; do [[ "${tool}" == "${t}" ]] && known=1; done
    if ((!known)); then
      echo "build-tools: unknown tool '${tool}' (known: ${ALL_TOOLS[*]})" >&2
      exit 2
    fi
  done

  mkdir -p "${BIN_DIR}"
  # Serialise concurrent runs (e.g. two test targets started at once).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"${BIN_DIR}/.tools.lock"
    flock 9
  fi

  export GOWORK=off CGO_ENABLED=0
  local total_start=${SECONDS} built=0
  for tool in "${tools[@]}"; do
    local dir pkg module version hash reason ldflags start
    dir=$(tool_dir "${tool}")
    pkg=$(tool_pkg "${tool}")
    module=$(tool_module "${tool}")
    version=$(mod_version "${dir}" "${module}")
    hash=$(tool_hash "${tool}")
    reason=$(outdated_reason "${tool}" "${hash}")
    if [[ -z "${reason}" ]]; then
      echo "bin/${tool} is up to date (${module} ${version})"
      continue
    fi
    echo "building ${tool} from ${module} ${version} ($(tool_estimate "${tool}"); ${reason})..."
    ldflags=$(tool_ldflags "${tool}")
    start=${SECONDS}
    (cd "${dir}" && nice -n 10 go build -trimpath -ldflags "${ldflags}" -o "${BIN_DIR}/${tool}" "${pkg}")
    # go build leaves an identical existing binary untouched; refresh its
    # mtime so the go.mod/go.sum age check does not fire again.
    touch "${BIN_DIR}/${tool}"
    write_stamp "${tool}" "${hash}"
    echo "built bin/${tool} in $(fmt_duration $((SECONDS - start)))"
    built=$((built + 1))
  done
  if ((built > 1)); then
    echo "built ${built} tools in $(fmt_duration $((SECONDS - total_start)))"
  fi
}

main "$@"
