#!/usr/bin/env bash
# Installs the host tools outpost's demo, tests and benchmarks use, from Debian's own archive.
# Idempotent: packages already present are skipped, so a second run is a quick no-op.
# Usage: scripts/install-host-deps.sh [--check] [--with-bench] [--with-system] [--with-conformance]
#   --check        list what is missing and exit 1 if anything is (installs nothing)
#   --with-bench   also install the comparison baselines used by `npm run bench` (mender-client, xdelta3, zchunk)
#                  and what builds its Debian rootfs and ext4 images (mmdebstrap, e2fsprogs)
#   --with-system  also install what `npm run test:system` needs to build and boot a gateway image in qemu
#                  (grub-pc-bin only ships the i386-pc modules and boot.img; never install grub-pc on the host)
#   --with-conformance  also install what scripts/tuf-conformance.sh (in `npm run test:long`) needs: faketime, python3-venv
set -euo pipefail

packages=(
  ostree
  mosquitto mosquitto-clients
  swtpm swtpm-tools tpm2-tools
  openssl ca-certificates
  build-essential python3
  systemd
  systemd-journal-remote
  curl
  # the access tests start sshd processes of their own (own config, host key, port); never the host's
  openssh-server openssh-client
  grub-common u-boot-tools libubootenv-tool
)
check_only=false
for arg in "$@"; do
  case "$arg" in
    --check) check_only=true ;;
    --with-bench) packages+=(mender-client xdelta3 zchunk mmdebstrap debian-archive-keyring e2fsprogs) ;;
    --with-system) packages+=(qemu-system-x86 qemu-utils mmdebstrap debian-archive-keyring grub-pc-bin
                              fdisk e2fsprogs util-linux mount socat iproute2) ;;
    --with-conformance) packages+=(faketime python3-venv) ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-host-deps: unknown option '$arg' (try --help)" >&2; exit 64 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-host-deps: all host packages present"
  exit 0
fi
if $check_only; then
  echo "install-host-deps: missing: ${missing[*]}"
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-host-deps: missing ${missing[*]}; run as root: sudo $0 $*" >&2
  exit 69
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
# --no-install-recommends keeps the set small; policy-rc.d stops packages from starting their
# services (mosquitto) on hosts where an init would honour it: tests start their own instances.
apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-host-deps: installed ${missing[*]}"
