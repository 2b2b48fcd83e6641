#!/usr/bin/env bash
# Builds the kvnode image with no registry and no Dockerfile: a static binary
# in an otherwise empty filesystem, imported with `docker import`.
#
# The image is tagged with the binary's hash (kvnode:<sha12>) and as
# kvnode:latest; if an image with that hash exists already, nothing is
# imported. Prints the tag it made current.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# The host's own target (x86_64 or aarch64 alike): containers share its kernel.
target=$(rustc -vV | sed -n 's/^host: //p')
[ -n "$target" ] || { echo "build-image: cannot tell the host target from rustc -vV" >&2; exit 1; }
cd "$root"
# --target keeps build scripts and proc-macros dynamic (docs/PLATFORM.md, "Images without a registry").
RUSTFLAGS='-C target-feature=+crt-static' cargo build --quiet --release --target "$target" -p cluster --bin kvnode
bin="${CARGO_TARGET_DIR:-$root/target}/$target/release/kvnode"
if ! ldd "$bin" 2>&1 | grep -qE "statically linked|not a dynamic executable"; then
  echo "build-image: $bin is not static; refusing to build an image that cannot start" >&2
  exit 1
fi
sha=$(sha256sum "$bin" | cut -c1-12)
tag="kvnode:$sha"
if ! docker image inspect "$tag" >/dev/null 2>&1; then
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/data" "$stage/tmp"
  chmod 1777 "$stage/tmp"
  cp "$bin" "$stage/kvnode"
  tar -C "$stage" -c . | docker import \
    -c 'ENTRYPOINT ["/kvnode"]' \
    -c 'ENV KV_DATA_DIR=/data KV_LISTEN=0.0.0.0:7000' \
    -c 'EXPOSE 7000' \
    -c 'LABEL org.kvtest.image=kvnode' \
    - "$tag" >/dev/null
fi
docker tag "$tag" kvnode:latest
echo "$tag"
