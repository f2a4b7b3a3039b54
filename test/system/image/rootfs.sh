#!/bin/bash
# Stage 1 of the system-test image: a Debian 12 rootfs directory from Debian packages alone.
# usage: rootfs.sh OUT_DIR      (run as root; needs the Debian archive; cached by the harness)
# The host's apt sources are passed on so the image uses the same (snapshot) mirror as the host.
set -euo pipefail
out=$1
rm -rf "$out" "$out.tmp"
# libstdc++6: the host's /usr/bin/node links it. systemd-networkd (in `systemd`) does DHCP on the
# qemu user network. grub-common: grub-editenv for the boot counter. tpm2-tools: scenario 7.
# openssh-server/-client: scenario 02 logs in through a just-in-time access grant from inside the guest.
pkgs=systemd,systemd-sysv,udev,kmod,ostree,ostree-boot,linux-image-amd64,dracut,iproute2,grub-common,tpm2-tools
pkgs+=,e2fsprogs,util-linux,procps,mount,libstdc++6,ca-certificates,openssh-server,openssh-client
sources=()
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do [ -s "$f" ] && sources+=("$f"); done
mmdebstrap --variant=minbase --include="$pkgs" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook='chroot "$1" passwd -d root' \
  --customize-hook='echo outpost-gw > "$1/etc/hostname"' \
  bookworm "$out.tmp" "${sources[@]}"
mv "$out.tmp" "$out"
