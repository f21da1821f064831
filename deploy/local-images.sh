#!/usr/bin/env bash
# A development aid, not something users need: builds with podman, on a machine that
# reaches no image registry (only Debian's mirror and PyPI), every image that
# docker-compose.yml names, so that the compose stack can be started for real:
#
#   localhost/chat-gateway-base:bookworm   Debian bookworm (minbase) with python3: the
#                                          gateway image's base, in place of python:3.11-slim
#   docker.io/library/redis:7              stand-in: bookworm + Debian's redis-server
#   docker.io/library/nginx:1.27           stand-in: bookworm + Debian's nginx and curl
#   localhost/chat-gateway:latest          deploy/Dockerfile on that base (docker format:
#                                          OCI images drop HEALTHCHECK), installed with
#                                          --no-index from deploy/wheelhouse/ (built here
#                                          with pip on the host)
#
# The stand-ins carry the names compose asks for, so compose finds them locally and
# pulls nothing; each is labelled as a stand-in. Cached: an image that exists is kept
# (delete it to rebuild), debootstrap keeps its .debs in $CACHE, and the gateway image
# is rebuilt from podman's layer cache. Needs root (debootstrap), podman and debootstrap.
#
#   deploy/local-images.sh            build what is missing, then the gateway image
#   PYTHON=.venv/bin/python ...       the Python whose pip builds the wheelhouse
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CACHE=${CHAT_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chat-gateway-images}
BASE=localhost/chat-gateway-base:bookworm
REDIS=docker.io/library/redis:7
NGINX=docker.io/library/nginx:1.27
GATEWAY=localhost/chat-gateway:latest
STANDIN='org.opencontainers.image.description=stand-in built by deploy/local-images.sh'

say() { printf 'local-images: %s\n' "$*" >&2; }

# The Debian mirror: DEBIAN_MIRROR, else the first Debian archive the host's apt uses
# (deb822 or one-line sources), else deb.debian.org.
debian_mirror() {
    local uri=${DEBIAN_MIRROR:-}
    if [ -z "$uri" ]; then
        uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources \
            /etc/apt/sources.list.d/*.list /etc/apt/sources.list \
            | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true)
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

# rootfs NAME PACKAGES CHANGE...: a bookworm minbase with PACKAGES, imported as NAME.
rootfs() {
    local name=$1 packages=$2
    shift 2
    if podman image exists "$name"; then
        say "$name: exists, kept"
        return
    fi
    local started
    started=$(date +%s)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/chat-rootfs.XXXXXX")
    trap 'rm -rf "$dir" "$dir.log"' EXIT  # also on a failure or Ctrl-C
    mkdir -p "$CACHE/debs"
    say "$name: debootstrap bookworm with $packages"
    debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$packages" \
        bookworm "$dir" "$(debian_mirror)" >"$dir.log" 2>&1 \
        || { tail -n 20 "$dir.log" >&2; rm -rf "$dir" "$dir.log"; exit 1; }
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir.log"
    local changes=(--change "LABEL $STANDIN")
    for change in "$@"; do changes+=(--change "$change"); done
    case $name in
        "$REDIS") mkdir -p "$dir/data" ;;
        "$NGINX") mkdir -p "$dir/var/cache/nginx" ;;
    esac
    tar -C "$dir" -c . | podman import "${changes[@]}" - "$name" >/dev/null
    rm -rf "$dir"
    trap - EXIT
    say "$name: built in $(($(date +%s) - started)) s"
}

rootfs "$BASE" python3,python3-venv 'CMD ["python3"]'
rootfs "$REDIS" redis-server 'WORKDIR /data' 'EXPOSE 6379' 'CMD ["redis-server"]'
rootfs "$NGINX" nginx,curl 'EXPOSE 80' 'STOPSIGNAL SIGQUIT' \
    'CMD ["nginx", "-g", "daemon off;"]'

# The wheelhouse: every package the gateway installs, as binary wheels for the base's
# Python (CPython 3.11 on glibc; whatever Python the host runs), plus setuptools to build
# the project itself offline, and async-timeout, which redis-py needs on Python < 3.11.3
# (Debian's is 3.11.2; pip's --python-version does not say which 3.11). pip asks PyPI
# each run and downloads what is missing.
say "wheelhouse: pip download into deploy/wheelhouse/"
arch=$(uname -m)
mapfile -t requirements < <("$PYTHON" -c '
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
"$PYTHON" -m pip download --quiet --disable-pip-version-check --dest deploy/wheelhouse \
    --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
    --platform "manylinux_2_28_$arch" --platform "manylinux_2_17_$arch" \
    --platform "manylinux2014_$arch" \
    "${requirements[@]}" 'setuptools>=77' 'async-timeout>=4.0.3'

say "$GATEWAY: podman build on $BASE"
podman build --quiet --format docker --file deploy/Dockerfile \
    --ignorefile deploy/Dockerfile.dockerignore --tag "$GATEWAY" \
    --build-arg BASE="$BASE" --build-arg PIP_INDEX=--no-index . >/dev/null
say "done: $BASE $REDIS $NGINX $GATEWAY"
