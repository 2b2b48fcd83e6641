#!/usr/bin/env bash
# Builds a container image of a store installed on this host, with no
# registry and no Dockerfile: the store's binary, the shared libraries `ldd`
# names and the dynamic loader, in an otherwise empty file system, imported
# with `docker import` (docs/PLATFORM.md, "Images without a registry").
#
#   harness/scripts/host-image.sh systems/etcd.toml
#
# Reads the binary ([launch] binary) and the image name ([image] name) from
# the system description. The binary keeps its name (redis-server picks its
# mode from argv[0]) and becomes the entrypoint. The image is tagged with a
# hash of what went in, and with the description's tag; if an image with
# that hash exists already, nothing is imported. Prints the tag it made
# current.
set -euo pipefail
description=${1:?usage: host-image.sh systems/NAME.toml}
field() { # field SECTION KEY: a quoted string value from the description
  awk -v section="[$1]" -v key="$2" '
    /^\[/ { in_section = ($0 == section) }
    in_section && $1 == key && $2 == "=" { line = $0; sub(/^[^=]*= *"/, "", line); sub(/".*$/, "", line); print line; exit }
  ' "$description"
}
binary_name=$(field launch binary)
image=$(field image name)
[ -n "$binary_name" ] && [ -n "$image" ] || { echo "host-image: $description needs [launch] binary and [image] name" >&2; exit 1; }
variable=$(echo "${binary_name}_BIN" | tr 'a-z-' 'A-Z_')
binary=${!variable:-$(command -v "$binary_name" || true)}
if [ -z "$binary" ] || [ ! -e "$binary" ]; then
  echo "host-image: no $binary_name on this host: install it (apt-get install ...) or set $variable" >&2
  exit 1
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/data" "$stage/tmp" "$stage/etc"
chmod 1777 "$stage/tmp"
cp -L "$binary" "$stage/$binary_name"
# Every library ldd resolves, and the loader, at the paths the binary asks for.
ldd "$binary" | awk '/=> \// { print $3 } /^[ \t]*\/[^ ]+/ { print $1 }' | while read -r lib; do
  mkdir -p "$stage$(dirname "$lib")"
  cp -L "$lib" "$stage$lib"
done
# Names resolve through Docker's DNS; files first for /etc/hosts.
echo "hosts: files dns" > "$stage/etc/nsswitch.conf"
sha=$(tar -C "$stage" --sort=name --mtime=@0 --owner=0 --group=0 -c . | sha256sum | cut -c1-12)
name=${image%:*}
tag="$name:$sha"
if ! docker image inspect "$tag" >/dev/null 2>&1; then
  tar -C "$stage" -c . | docker import \
    -c "ENTRYPOINT [\"/$binary_name\"]" \
    -c "LABEL org.kvtest.image=$name" \
    - "$tag" >/dev/null
fi
docker tag "$tag" "$image"
echo "$tag"
