#!/usr/bin/env bash
# Writes a one-layer OCI image (an OCI image-layout tar archive) from a root filesystem directory,
# without any container tooling, so that the test cluster needs no outside registry.
#
#   hack/images/mkimage.sh ROOTFS_DIR OUT_TAR IMAGE_REF [ENTRYPOINT_JSON [CMD_JSON [USER]]]
#   e.g. hack/images/mkimage.sh rootfs/ pause.tar localhost/pause:3.10 '["/pause"]'
#
# The layer is reproducible (sorted, owner 0:0 unless the files say otherwise with
# MKIMAGE_KEEP_OWNERS=1, mtime 0) and keeps `security.capability` xattrs: rootless BuildKit's
# newuidmap/newgidmap need file capabilities, not the setuid bit. The result is importable with
# `ctr -n k8s.io images import` (the name comes from the io.containerd.image.name annotation) and
# readable by skopeo as `oci-archive:OUT_TAR`.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

[ $# -ge 3 ] || die "usage: $0 ROOTFS_DIR OUT_TAR IMAGE_REF [ENTRYPOINT_JSON [CMD_JSON [USER]]]"
rootfs=$1 out=$2 ref=$3 entrypoint=${4:-null} cmd=${5:-null} user=${6:-}
[ -d "$rootfs" ] || die "no rootfs directory $rootfs"
for j in "$entrypoint" "$cmd"; do
  jq -e 'type == "array" or type == "null"' <<<"$j" >/dev/null 2>&1 || die "not a JSON array or null: $j"
done
tag=${ref##*:}
case $ref in *@*) die "IMAGE_REF must be a name:tag, not a digest: $ref" ;; esac

w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/blobs/sha256"

owners=(--owner=0 --group=0 --numeric-owner)
[ "${MKIMAGE_KEEP_OWNERS:-0}" = 1 ] && owners=(--numeric-owner)
tar --sort=name "${owners[@]}" --mtime=@0 --xattrs --xattrs-include=security.capability \
  -C "$rootfs" -cf "$w/layer.tar" .
diff_id=$(sha256sum "$w/layer.tar" | cut -d' ' -f1)
gzip -n -6 -c "$w/layer.tar" >"$w/layer.tgz"
rm "$w/layer.tar"

# put_blob FILE: moves FILE into blobs/ and prints "DIGEST SIZE".
put_blob() {
  local sum size
  sum=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$w/blobs/sha256/$sum"
  echo "$sum $size"
}
read -r layer_sha layer_size < <(put_blob "$w/layer.tgz")

jq -cn --argjson ep "$entrypoint" --argjson cmd "$cmd" --arg user "$user" --arg diff "sha256:$diff_id" '{
  architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
  config: ({Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            Entrypoint: $ep, Cmd: $cmd, WorkingDir: "/"} + (if $user == "" then {} else {User: $user} end)),
  rootfs: {type: "layers", diff_ids: [$diff]},
  history: [{created: "1970-01-01T00:00:00Z", created_by: "hack/images/mkimage.sh"}]
}' >"$w/config.json"
read -r config_sha config_size < <(put_blob "$w/config.json")

jq -cn --arg c "sha256:$config_sha" --argjson cs "$config_size" --arg l "sha256:$layer_sha" --argjson ls "$layer_size" '{
  schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
  config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
  layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $l, size: $ls}]
}' >"$w/manifest.json"
read -r manifest_sha manifest_size < <(put_blob "$w/manifest.json")

jq -cn --arg m "sha256:$manifest_sha" --argjson ms "$manifest_size" --arg ref "$ref" --arg tag "$tag" '{
  schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
    platform: {architecture: "amd64", os: "linux"},
    annotations: {"io.containerd.image.name": $ref, "org.opencontainers.image.ref.name": $tag}}]
}' >"$w/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$w/oci-layout"

mkdir -p "$(dirname "$out")"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$w" -cf "$out.tmp" oci-layout index.json blobs
mv "$out.tmp" "$out"
log "wrote $out ($ref, manifest sha256:$manifest_sha)"
