# Slipway's own images, built by hack/images/slipway-images.sh with the project's rootless BuildKit
# (v0.33.1, built from the Go module proxy) from a context that the script assembles out of the
# freshly built static `slipway` binary, our buildkitd/buildctl and Debian 12 packages. No base image:
# nothing outside this machine is reachable, and every file in the images is listed by the script.
#
# Targets: slipway (server), slipway-builder (`slipway build` + git), buildkit-rootless (sidecar).
# COPY --link makes each layer independent of the ones below it: the binary's layer is the same
# blob in the server and builder images (nodes pull it once), and a new binary does not rebuild
# the git or BuildKit layers.

# setcap with its libraries, only ever mounted into a RUN step (never part of an image). BuildKit
# drops file capabilities of files sent from the local context: fsutil's receiver sets the xattrs
# and then chowns the file, and the kernel clears security.capability on chown. Capabilities set
# by a RUN step stay in that step's layer (containerd's differ writes them as PAX xattrs).
FROM scratch AS setcap
COPY setcap/ /

# The server: a static binary on scratch, non-root. CA certificates for the forges' APIs.
FROM scratch AS slipway
COPY --link slipway /usr/local/bin/slipway
COPY --link server/ /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/slipway"]
CMD ["serve"]

# The builder: the same binary plus Debian's git (git, git-remote-http(s) and the shared libraries
# they link), because `slipway build` fetches the commit with git. The server image stays minimal.
FROM scratch AS slipway-builder
COPY --link slipway /usr/local/bin/slipway
COPY --link builder/ /
USER 1000:1000
ENV HOME=/tmp
ENTRYPOINT ["/usr/local/bin/slipway"]
CMD ["build", "--help"]

# Rootless BuildKit, equivalent to upstream's moby/buildkit:rootless: our buildkitd/buildctl,
# Debian's rootlesskit, runc and newuidmap/newgidmap (file capabilities, not setuid: a setuid-root
# newuidmap cannot write uid_map for a user namespace owned by uid 1000 without CAP_SYS_ADMIN),
# busybox for the probes' `test`, /etc/subuid and /etc/subgid for uid 1000 that fit in the 65536
# ids of a user-namespaced pod.
FROM scratch AS buildkit-rootless
COPY --link buildkit/ /
# Not --link: a linked COPY --chown would create /home and /run owned by 1000 as well.
COPY --chown=1000:1000 home-user/ /home/user/
COPY --chown=1000:1000 run-user/ /run/user/1000/
RUN --mount=from=setcap,target=/.setcap ["/.setcap/lib64/ld-linux-x86-64.so.2", "--library-path", "/.setcap/lib", "/.setcap/setcap", "cap_setuid=ep", "/usr/bin/newuidmap", "cap_setgid=ep", "/usr/bin/newgidmap"]
USER 1000:1000
ENV HOME=/home/user USER=user XDG_RUNTIME_DIR=/run/user/1000 BUILDKIT_HOST=unix:///run/buildkit/buildkitd.sock
ENTRYPOINT ["rootlesskit", "buildkitd"]
