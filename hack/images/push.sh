#!/usr/bin/env bash
# Pushes an OCI image-layout tar (e.g. from hack/images/mkimage.sh or a BuildKit oci export) to the
# test cluster's registry over TLS, trusting only the cluster's registry CA. Prints the pushed image
# by digest, which is how pods should refer to it.
#
#   hack/images/push.sh OCI_TAR REPO:TAG      # e.g. push.sh pause.tar slipway/pause:3.10
#
# Reads the registry address and CA from the env file hack/cluster/up.sh writes
# ($SLIPWAY_CLUSTER_ENV, default /var/lib/slipway-e2e-cluster/cluster.env).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

[ $# -eq 2 ] || die "usage: $0 OCI_TAR REPO:TAG"
tarball=$1 dest=$2
[ -f "$tarball" ] || die "no such file: $tarball"
case $dest in */*:*) ;; *) die "REPO:TAG must look like project/name:tag, got $dest" ;; esac
env_file=${SLIPWAY_CLUSTER_ENV:-${SLIPWAY_CLUSTER_DIR:-/var/lib/slipway-e2e-cluster}/cluster.env}
[ -f "$env_file" ] || die "no cluster env file $env_file: run hack/cluster/up.sh first"
registry=$(sed -n 's/^SLIPWAY_REGISTRY=//p' "$env_file")
cert_dir=$(sed -n 's/^SLIPWAY_REGISTRY_CERT_DIR=//p' "$env_file")
{ [ -n "$registry" ] && [ -d "$cert_dir" ]; } || die "$env_file lacks SLIPWAY_REGISTRY or SLIPWAY_REGISTRY_CERT_DIR"
apt_install skopeo

digest_file=$(mktemp)
trap 'rm -f "$digest_file"' EXIT
# --preserve-digests: push the manifest as built (no conversion), so its digest is the one built.
skopeo copy -q --preserve-digests --dest-cert-dir "$cert_dir" --digestfile "$digest_file" \
  "oci-archive:$tarball" "docker://$registry/$dest" >&2
echo "$registry/${dest%:*}@$(cat "$digest_file")"
