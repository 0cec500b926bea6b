#!/usr/bin/env bash
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Builds every image the molecule scenarios need, locally (no registry is reachable):
#   local/debian:bookworm, local/debian:trixie   systemd "host" images (debootstrap + docker import), built once
#   local/gitlab-runner-double:v1, :v2           TEST DOUBLE of gitlab/gitlab-runner (see runner-double/README)
#   local/docker-cli-double:1                    TEST DOUBLE of the docker:*-cli job image (docker CLI + Buildx)
#   local/net-services:1                         tinyproxy and docker-registry (the scenarios' proxy and registry)
#   local/fake-gitlab:test                       tools/fake_gitlab/server.py as a container
# Base images are reused when present; FORCE_BASE=1 rebuilds them. The small images are rebuilt every time
# (seconds, thanks to the layer cache) so they always match the checkout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
base_packages="python3,systemd,systemd-sysv,ca-certificates,curl,gnupg,iproute2,procps"

log() { printf '[build-images] %s\n' "$*" >&2; }

debian_mirror() {
    # Same mirror the machine itself uses; never a host name written into the repository.
    local sources=/etc/apt/sources.list.d/debian.sources
    if [[ -r "${sources}" ]]; then
        awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "${sources}"
    elif [[ -r /etc/apt/sources.list ]]; then
        awk '/^deb / && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list
    fi
}

build_base() {
    local suite="$1" image="local/debian:$1"
    if [[ -z "${FORCE_BASE:-}" ]] && docker image inspect "${image}" >/dev/null 2>&1; then
        log "${image} present, reused"
        return
    fi
    command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install -y debootstrap"; exit 1; }
    local mirror dir
    mirror="$(debian_mirror)"
    [[ -n "${mirror}" ]] || { log "no Debian mirror found in the apt sources"; exit 1; }
    dir="$(mktemp -d "/tmp/rootfs-${suite}.XXXXXX")"
    log "debootstrap ${suite} from ${mirror}"
    debootstrap --variant=minbase --include="${base_packages}" "${suite}" "${dir}" "${mirror}" >"/tmp/debootstrap-${suite}.log" 2>&1 \
        || { tail -n 20 "/tmp/debootstrap-${suite}.log" >&2; exit 1; }
    rm -f "${dir}/etc/machine-id" && : >"${dir}/etc/machine-id"
    tar -C "${dir}" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' - "${image}" >/dev/null
    rm -rf "${dir}"
    log "${image} imported"
}

build_doubles() {
    local ctx
    log "building local/gitlab-runner-double:v1 and :v2"
    ctx="$(mktemp -d)"
    cp "${here}"/runner-double/* "${ctx}/"
    # the double saves config.toml with the collection's codec (config_toml.resave), the only copy of the schema
    mkdir -p "${ctx}/ansible_collections/dood/gitlab_runner/plugins/module_utils"
    cp "${root}"/plugins/module_utils/{config_toml,config_schema,_tomli}.py "${ctx}/ansible_collections/dood/gitlab_runner/plugins/module_utils/"
    docker build -q --build-arg DOUBLE_VERSION=v1 -t local/gitlab-runner-double:v1 "${ctx}" >/dev/null
    docker build -q --build-arg DOUBLE_VERSION=v2 -t local/gitlab-runner-double:v2 "${ctx}" >/dev/null
    rm -rf "${ctx}"

    log "building local/docker-cli-double:1"
    docker build -q -t local/docker-cli-double:1 "${here}/docker-cli-double" >/dev/null

    log "building local/net-services:1"
    docker build -q -t local/net-services:1 "${here}/net-services" >/dev/null

    log "building local/fake-gitlab:test"
    [[ -f "${root}/tools/fake_gitlab/server.py" ]] || { log "tools/fake_gitlab/server.py missing"; exit 1; }
    ctx="$(mktemp -d)"
    cp "${here}/fake-gitlab/Dockerfile" "${ctx}/"
    mkdir "${ctx}/fake_gitlab"
    cp "${root}"/tools/fake_gitlab/*.py "${ctx}/fake_gitlab/"
    docker build -q -t local/fake-gitlab:test "${ctx}" >/dev/null
    rm -rf "${ctx}"
}

build_base bookworm
build_base trixie
build_doubles
log "done"
