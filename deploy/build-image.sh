#!/usr/bin/env bash
# Build the Veikals image from deploy/Dockerfile with buildah, on a machine with no Docker daemon
# and no image registry: the base is a Debian bookworm made here with debootstrap, standing in
# for python:3.11-slim-bookworm (python, pip, useradd on the PATH).
#
#   sudo deploy/build-image.sh                 # -> localhost/veikals:local in buildah's storage
#   IMAGE=localhost/veikals:1.2 sudo deploy/build-image.sh
#   REBUILD_BASE=1 sudo deploy/build-image.sh  # make the base anew (monthly, for security updates)
#
# Needs root and Debian's buildah and debootstrap (apt-get install -y buildah debootstrap).
# Hand the image to Docker with: buildah push localhost/veikals:local docker-daemon:veikals:local
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

IMAGE=${IMAGE:-localhost/veikals:local}
BASE=${BASE:-localhost/veikals-base:bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# Empty: buildah's default (overlay); STORAGE_DRIVER=vfs where overlay cannot mount (some containers).
BUILDAH=(buildah ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"})

say() { printf '%s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    say "Run as root: buildah --isolation chroot and debootstrap need it."
    exit 1
fi
for tool in buildah debootstrap; do
    if ! command -v "$tool" >/dev/null; then
        say "$tool is missing: apt-get install -y buildah debootstrap"
        exit 1
    fi
done

ROOTFS=""
trap '[[ -z $ROOTFS ]] || rm -rf "$ROOTFS" "$ROOTFS.log"' EXIT

make_base() {
    local rootfs container mount
    ROOTFS=$(mktemp -d /tmp/veikals-base.XXXXXX)
    rootfs=$ROOTFS
    say "debootstrap: Debian bookworm with Python into $rootfs ..."
    debootstrap --variant=minbase \
        --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
        bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # The image's Python belongs to the application, as python:slim's /usr/local one does.
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    container=$("${BUILDAH[@]}" from scratch)
    mount=$("${BUILDAH[@]}" mount "$container")
    cp -a "$rootfs"/. "$mount"/
    "${BUILDAH[@]}" umount "$container" >/dev/null
    "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 "$container"
    "${BUILDAH[@]}" commit --quiet --rm "$container" "$BASE" >/dev/null
    say "base image: $BASE"
}

started=$SECONDS
if [[ -n ${REBUILD_BASE:-} ]] || ! "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
    make_base
fi

# --format docker keeps the HEALTHCHECK (the OCI format has none). The host's CA bundle is
# mounted into every RUN, so pip trusts what this machine trusts (a proxy's CA too); it stays
# out of the image.
"${BUILDAH[@]}" build --isolation chroot --format docker --layers \
    --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    --build-arg PYTHON_IMAGE="$BASE" \
    --file deploy/Dockerfile --tag "$IMAGE" .

say "built $IMAGE in $((SECONDS - started)) s:"
"${BUILDAH[@]}" images "$IMAGE" >&2
