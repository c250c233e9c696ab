#!/bin/busybox sh
# SPDX-License-Identifier: Apache-2.0
# /init of the old-kernel VM (test_vm_old_kernel.py): a Debian 6.1 kernel, which has none of
# file-backed EROFS (6.12), overlayfs fsconfig parsing (6.5), data-only layers (6.5), verity=
# (6.6), lowerdir+ (6.7) or detached layers (6.15). Every fallback of mount.composefs runs for
# real: loop device, legacy mount(2), plain lower layers, EROFS stacked beneath the overlay,
# tryverity without the option. Prints PASS/FAIL lines like guest_init.sh.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs -o mode=755 run /run
. /params
echo "GUEST: kernel $(uname -r)"
NPASS=0; NFAIL=0
pass() { echo "PASS $*"; NPASS=$((NPASS+1)); }
fail() { echo "FAIL $*"; NFAIL=$((NFAIL+1)); }
check() { name=$1; shift; if "$@"; then pass "$name"; else fail "$name"; fi; }
expect_file() { # name path expected-file
  if [ "$(cat "$2" 2>&1)" = "$(cat "$3")" ]; then pass "$1"; else fail "$1 ($2: $(cat "$2" 2>&1 | head -c 80))"; fi; }
has() { echo "$1" | grep -q -- "$2"; }
no_leftovers() {
  n=$(grep -c -E ' - (erofs|overlay) ' /proc/self/mountinfo)
  l=$(cat /sys/block/loop*/loop/backing_file 2>/dev/null | wc -l)
  check "$1 (mounts=$n loops=$l)" test "$n" = 0 -a "$l" = 0; }

for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done
check ext4-mount mount -t ext4 /dev/vda /disk
S=/disk/store

echo "--- every fallback at once"
out=$(cfs mount --json /images/clean.cfs /m1 -o "basedir=$S" 2>&1)
echo "  $out"
check "erofs via loop device" has "$out" '"erofs": "loop"'
check "overlay via mount(2) without data-only layers" has "$out" '"overlay": "legacy-plain"'
check "erofs stacked beneath the overlay" has "$out" '"lower": "stacked"'
check "warning about plain lower layers" has "$out" 'no data-only overlay layers'
grep -E ' /m1 ' /proc/self/mountinfo | sed 's/^/  /'
expect_file read-external /m1/good /expect/good
expect_file read-inline /m1/small /expect/small
expect_file read-nested /m1/dir/file2 /expect/file2
check symlink test "$(readlink /m1/link)" = dir/file2
check "object directories hidden by the root whiteouts" sh -c "! ls /m1 | grep -qE '^[0-9a-f]{2}$'"
check "cfs umount" cfs umount /m1
no_leftovers "umount removes overlay, stacked EROFS and loop device"

echo "--- verity needs Linux 6.6"
out=$(mount.composefs /images/clean.cfs /m1 -o "basedir=$S,verity" 2>&1)
check "verity refused with a clear message ($out)" has "$out" "no verity= option (Linux 6.6)"
no_leftovers "refused verity mount leaves nothing"
out=$(cfs mount --json /images/clean.cfs /m1 -o "basedir=$S,tryverity" 2>&1)
check "tryverity mounts" has "$out" '"verity": "off"'
check "tryverity says so" has "$out" "WITHOUT fs-verity"
expect_file tryverity-read /m1/good /expect/good
check "cfs umount (tryverity)" cfs umount /m1

echo "--- digest= with tryverity: sealed copy, verity dropped with a warning"
out=$(cfs mount --json /images/clean.cfs /m1 -o "basedir=$S,digest=$D_IMG_CLEAN,tryverity" 2>&1)
check "sealed copy checked" has "$out" '"digest_check": "sealed-copy"'
expect_file digest-read /m1/good /expect/good
check "cfs umount (digest)" cfs umount /m1
out=$(mount.composefs /images/clean.cfs /m1 -o "basedir=$S,digest=$D_IMG_OTHER,tryverity" 2>&1)
check "wrong image digest refused" has "$out" "wrong fs-verity digest"
no_leftovers "digest mounts leave nothing"

echo "--- upper layer and metacopy copy-up"
mkdir -p /run/up /run/wk
check mount-upper cfs mount /images/clean.cfs /m1 -o "basedir=$S,upperdir=/run/up,workdir=/run/wk,rw"
check write-new sh -c "echo new > /m1/new && test \"\$(cat /run/up/new)\" = new"
check chmod-copyup chmod 600 /m1/good
check "upper is a metacopy file" sh -c "getfattr -n trusted.overlay.metacopy /run/up/good >/dev/null 2>&1"
expect_file read-after-copyup /m1/good /expect/good
check "cfs umount (upper)" cfs umount /m1
no_leftovers final-no-leftovers
echo "GUEST-SUMMARY pass=$NPASS fail=$NFAIL"
echo GUEST-DONE
umount /disk
poweroff -f
