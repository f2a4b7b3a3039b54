#!/bin/bash
# Stage 2 of the system-test image: OSTree commits v1..v13 + a bootable disk with v1 deployed.
# usage: build-image.sh ROOTFS PAYLOAD OUT
#   ROOTFS   Debian rootfs from rootfs.sh (read only here)
#   PAYLOAD  tree copied over the rootfs: outpost (/usr/lib/outpost, /usr/bin/outpost), node, /etc/outpost
#   OUT      gets repo/ (archive repo, refs rig/v1..v12), commits.env, disk.qcow2
# Run as root. Layout follows the reference rig: MBR, p1 /boot (LABEL=boot, ext4 WITHOUT a journal),
# p2 ext4 sysroot. /boot has no journal because GRUB reads it without replaying one: ostree's
# fsync after its boot-config swap must land where GRUB reads (ostree issue 3392; image/ builds
# the same layout).
set -euo pipefail
rootfs=$(readlink -f "$1"); payload=$(readlink -f "$2"); out=$(readlink -f "$3")
here=$(dirname "$(readlink -f "$0")")
work=$out/work; G=/usr/lib/grub/i386-pc; os=outpost
t() { echo "TIMING $1 $(( $(date +%s%N) / 1000000 - t0 )) ms"; t0=$(( $(date +%s%N) / 1000000 )); }
t0=$(( $(date +%s%N) / 1000000 ))
rm -rf "$work"; mkdir -p "$work"
stage=$work/stage
cp -a "$rootfs" "$stage"
cp -a "$here/overlay/." "$stage/"
cp -a "$payload/." "$stage/"
KVER=$(ls "$stage/usr/lib/modules" | head -1)
# libostree's grub2 backend runs grub-mkconfig when booted: divert it to the BLS -> menuentry generator.
chroot "$stage" dpkg-divert --quiet --local --rename --add /usr/sbin/grub-mkconfig
ln -sf /usr/libexec/rig/ostree-grub-gen "$stage/usr/sbin/grub-mkconfig"
rm -f "$stage/etc/grub.d/15_ostree"
# The outpost group (sysusers.d) must exist before outpost-installer.socket can be owned by it.
systemd-sysusers --root="$stage"
# The access principal of scenario 02 (commands.access.principals in image.ts): in outpost-access,
# so the drop-in points sshd at outpost's key file; password `*`, no password but not locked
# (docs/architecture.md "Remote access"). keysDir is shipped root 0755: the installer runs with
# UMask=0077, so a directory it had to make itself would be 0700, and sshd reads the key file as
# the principal.
chroot "$stage" groupadd --system outpost-access
chroot "$stage" useradd --no-create-home --home-dir / --shell /bin/sh --password '*' --groups outpost-access gwops
install -d -m 0755 "$stage/etc/ssh/outpost-keys"
# ssh.service as Debian enables it: one sshd started with the boot, in parallel with outpost's start.
systemctl --root="$stage" enable systemd-networkd.service rig-agent.service rig-report.service outpost.service outpost-trial-guard.service outpost-installer.socket ssh.service >/dev/null 2>&1
t prepare
unshare -m sh -c "mount --rbind /dev '$stage/dev' && mount -t proc proc '$stage/proc' && mount -t sysfs sys '$stage/sys' &&
                  chroot '$stage' dracut -q --force --kver $KVER /initramfs.img"
t dracut
# ostree expects kernel + initramfs in /usr/lib/modules/$KVER
cp "$stage/boot/vmlinuz-$KVER" "$stage/usr/lib/modules/$KVER/vmlinuz"
mv "$stage/initramfs.img" "$stage/usr/lib/modules/$KVER/initramfs.img"
rm -rf "$stage"/boot/* "$stage"/vmlinuz* "$stage"/initrd.img* "$stage"/{dev,proc,sys,run,tmp}/*
# OSTree conventions: /etc -> /usr/etc (3-way merged on deploy), /var per OS, user dirs under /var.
mv "$stage/etc" "$stage/usr/etc"
rm -rf "$stage"/var/* "$stage"/{home,root,opt,srv,mnt,media} "$stage/usr/local"
for d in home:var/home root:var/roothome opt:var/opt srv:var/srv mnt:var/mnt media:run/media; do ln -s "${d#*:}" "$stage/${d%%:*}"; done
ln -s ../var/usrlocal "$stage/usr/local"
mkdir -p "$stage/sysroot"; ln -s sysroot/ostree "$stage/ostree"
repo=$out/repo; rm -rf "$repo"; ostree --repo="$repo" init --mode=archive
commit() { ostree --repo="$repo" commit -b "rig/v$1" -s "outpost system test v$1" --add-metadata-string=version="$1" "${@:2}"; }
v1=$(commit 1 --tree=dir="$stage")
t commit-v1
# v2..v4 layer a few files over v1 (fast: only the new files are hashed).
mk() { rm -rf "$work/v$1"; mkdir -p "$work/v$1/usr/lib/rig" "$work/v$1/usr/libexec/rig"; echo "$1" > "$work/v$1/usr/lib/rig/release"; }
mk 2; head -c 3M /dev/urandom > "$work/v2/usr/lib/rig/payload-v2.bin"       # something for the delta to carry
mk 3; printf '#!/bin/sh\necho "rig health: release 3 is bad on purpose" >&2\nexit 1\n' > "$work/v3/usr/libexec/rig/health"
chmod +x "$work/v3/usr/libexec/rig/health"
# v4 never reaches userspace: PID 1 exits at once -> "Attempted to kill init" -> panic=5 reboots.
mk 4; mkdir -p "$work/v4/usr/lib/systemd"; printf '#!/bin/sh\nexit 1\n' > "$work/v4/usr/lib/systemd/systemd"; chmod +x "$work/v4/usr/lib/systemd/systemd"
v2=$(commit 2 --tree=ref="$v1" --tree=dir="$work/v2")
v3=$(commit 3 --tree=ref="$v2" --tree=dir="$work/v3")
v4=$(commit 4 --tree=ref="$v2" --tree=dir="$work/v4")
# v13 breaks outpost itself (its config is not JSON: exit 78, no restart): only the trial guard
# can end its trial.
mk 13; mkdir -p "$work/v13/usr/etc/outpost"; printf '{ "deviceId": \n' > "$work/v13/usr/etc/outpost/config.json"
v13=$(commit 13 --tree=ref="$v2" --tree=dir="$work/v13")
printf 'V1=%s\nV2=%s\nV3=%s\nV4=%s\nV13=%s\nKVER=%s\n' "$v1" "$v2" "$v3" "$v4" "$v13" "$KVER" > "$out/commits.env"
# v5..v12: a chain of good releases (each on the one before, 1 MiB new payload) so the power-cut
# series can update one running gateway again and again instead of booting a fresh disk each time.
prev=$v2
for n in 5 6 7 8 9 10 11 12; do
  mk $n; head -c 1M /dev/urandom > "$work/v$n/usr/lib/rig/payload-v$n.bin"
  prev=$(commit $n --tree=ref="$prev" --tree=dir="$work/v$n")
  printf 'V%s=%s\n' "$n" "$prev" >> "$out/commits.env"
done
t commit-v2-v12
rm -rf "$stage"
img=$work/disk.img; mnt=$work/mnt
truncate -s 4G "$img"
printf 'label: dos\nstart=2048, size=256MiB, type=83, bootable\ntype=83\n' | sfdisk -q "$img"
# No udev in a container: losetup -P makes no partition devices, so use offset loop devices.
read -r B_OFF B_SZ R_OFF R_SZ < <(sfdisk -J "$img" | python3 -c 'import json,sys;p=json.load(sys.stdin)["partitiontable"]["partitions"];print(p[0]["start"]*512,p[0]["size"]*512,p[1]["start"]*512,p[1]["size"]*512)')
LB=$(losetup -f --show -o "$B_OFF" --sizelimit "$B_SZ" "$img"); LR=$(losetup -f --show -o "$R_OFF" --sizelimit "$R_SZ" "$img")
# set +e: one failing cleanup step must not skip the others (loop devices would leak).
trap 'set +e; umount -R "$mnt" 2>/dev/null; sync; for l in $LB $LR; do losetup -d $l || { sleep 1; losetup -d $l; }; done; true' EXIT
mkfs.ext4 -q -O ^has_journal -L boot "$LB"; mkfs.ext4 -q -L root "$LR"
mkdir -p "$mnt"; mount "$LR" "$mnt"; mkdir -p "$mnt/boot"; mount "$LB" "$mnt/boot"
ostree admin init-fs "$mnt"
ostree admin os-init "$os" --sysroot="$mnt"
ostree --repo="$mnt/ostree/repo" config set sysroot.bootloader grub2
ostree --repo="$mnt/ostree/repo" pull-local "$repo" "$v1"
mkdir -p "$mnt/boot/grub/i386-pc"; cp "$here/grub.cfg" "$mnt/boot/grub/grub.cfg"
cp $G/*.mod $G/*.lst "$mnt/boot/grub/i386-pc/"
grub-editenv "$mnt/boot/grub/grubenv" create
# panic=5: a release whose init dies must reboot (into GRUB's fallback), not hang.
# rd.shell=0 rd.emergency=reboot: the initramfs' emergency mode reboots (GRUB's counter can then
# fall back) instead of waiting at a shell nobody will type into; fsck.repair=yes: a journal-less
# /boot left unclean by a power cut is repaired, not a reason for emergency mode.
# cryptomgr.notests: skips the kernel's crypto self-tests, about 4 s of every TCG boot.
OSTREE_GRUB2_EXEC=$here/overlay/usr/libexec/rig/ostree-grub-gen \
  ostree admin deploy --sysroot="$mnt" --os="$os" --karg=root=LABEL=root --karg=rw --karg=console=ttyS0,115200 \
  --karg=panic=5 --karg=rd.shell=0 --karg=rd.emergency=reboot --karg=fsck.repair=yes --karg=cryptomgr.notests "$v1"
ostree admin status --sysroot="$mnt"
umount "$mnt/boot" "$mnt"
t image
grub-mkimage -O i386-pc -d $G -o "$work/core.img" -p '(hd0,msdos1)/grub' \
  biosdisk part_msdos ext2 normal configfile linux loadenv echo test serial terminal gzio sleep search
dd if=$G/boot.img of="$img" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$img" bs=512 seek=1 conv=notrunc status=none
qemu-img convert -O qcow2 "$img" "$out/disk.qcow2"
rm -rf "$work"
t grub-qcow2
