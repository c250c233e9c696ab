#!/bin/busybox sh
# SPDX-License-Identifier: Apache-2.0
# /init of the verity test VM (see test_vm_verity.py). Runs in a Debian kernel with
# CONFIG_FS_VERITY=y. /dev/vda: ext4 (-O verity) holding store/ (objects) and images/;
# /images: the same images on the initramfs (no fs-verity possible there). Every check prints
# "PASS name" or "FAIL name"; the host fails the test on any FAIL or a missing GUEST-DONE.
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
T0=0
section_start() { T0=$(cut -d' ' -f1 /proc/uptime); }
section_end() { echo "GUEST-TIME $1: $(awk -v a="$T0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.2f", b - a }') s"; }
# Reading a file: OK:<content> | OPEN_EIO | READ_EIO | OTHER:<message>
rd() { out=$(cat "$1" 2>&1); rc=$?
  if [ $rc = 0 ]; then echo "OK:$out"
  elif echo "$out" | grep -q "can't open.*Input/output error"; then echo OPEN_EIO
  elif echo "$out" | grep -q "Input/output error"; then echo READ_EIO
  else echo "OTHER:$out"; fi; }
expect_rd() { # name path want(/expect/FILE | OPEN_EIO | READ_EIO)
  got=$(rd "$2")
  case "$3" in /*) want="OK:$(cat "$3")";; *) want=$3;; esac
  if [ "$got" = "$want" ]; then pass "$1"; else fail "$1 ($2: want ${3##*/}, got $(echo "$got" | head -c 80))"; fi; }
xattr_hex() { getfattr -n "$1" -e hex "$2" 2>/dev/null | grep = | cut -d= -f2; }
kmsg() { dmesg | grep -E 'overlayfs|fs-verity|erofs' | tail -n "${1:-3}" | sed 's/^/  dmesg: /'; }
cfs_umount() { check "umount $1" cfs umount "$1"; }
no_leftovers() { # name: no erofs/overlay mounts and no loop devices in use
  n=$(grep -c -E ' - (erofs|overlay) ' /proc/self/mountinfo)
  l=$(cat /sys/block/loop*/loop/backing_file 2>/dev/null | wc -l)
  check "$1 (mounts=$n loops=$l)" test "$n" = 0 -a "$l" = 0; }

for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done
check disks test -b /dev/vda
check ext4-mount mount -t ext4 /dev/vda /disk
S=/disk/store
ok=1
for d in $VERITY_OBJECTS; do fsverity enable "$S/$d" || ok=0; done
check fsverity-enable-objects test $ok = 1
check fsverity-enable-image fsverity enable /disk/images/clean.cfs
M=$(fsverity measure "$S/$D_GOOD_PATH" | cut -d' ' -f1)
check "kernel-measure-equals-host-digest" test "$M" = "sha256:$D_GOOD"
check "cfs-info-measure-file-equals-host-digest" test "$(cfs info measure-file "$S/$D_GOOD_PATH")" = "$D_GOOD"
check object-without-verity sh -c "! fsverity measure $S/$D_NOV_PATH >/dev/null 2>&1"

echo "--- clean image (built by $BUILDER), verity + digest= (kernel measurement of the image)"
out=$(cfs mount --json /disk/images/clean.cfs /m1 -o "basedir=$S,digest=$D_IMG_CLEAN" 2>&1)
echo "  $out"
check "mount digest= (kernel)" sh -c "echo '$out' | grep -q '\"digest_check\": \"kernel\"'"
check "mount verity=require passed" grep -q 'verity=require' /proc/self/mountinfo
expect_rd good-read          /m1/good          /expect/good
expect_rd inline-read        /m1/small         /expect/small
expect_rd nested-read        /m1/dir/file2     /expect/file2
expect_rd corrupt-before     /m1/corrupt       /expect/corrupt
expect_rd replaced-before    /m1/replaced      /expect/replaced
check symlink-read test "$(readlink /m1/link)" = dir/file2
cfs_umount /m1
no_leftovers clean-umount-leaves-nothing

echo "--- digest= on an image without fs-verity: sealed memfd copy"
out=$(cfs mount --json /images/clean.cfs /m1 -o "basedir=$S,digest=$D_IMG_CLEAN" 2>&1)
check "mount digest= (sealed copy)" sh -c "echo '$out' | grep -q '\"digest_check\": \"sealed-copy\"'"
expect_rd sealed-good-read /m1/good /expect/good
cfs_umount /m1
no_leftovers sealed-umount-leaves-nothing

echo "--- wrong image digest refuses the mount"
out=$(mount.composefs /disk/images/clean.cfs /m1 -o "basedir=$S,digest=$D_IMG_OTHER" 2>&1)
check "wrong-image-digest-refused ($out)" sh -c "echo '$out' | grep -q 'wrong fs-verity digest' && ! grep -q ' /m1 ' /proc/self/mountinfo"
out=$(mount.composefs /images/clean.cfs /m1 -o "basedir=$S,digest=$D_IMG_OTHER" 2>&1)
check "wrong-image-digest-refused-sealed" sh -c "echo '$out' | grep -q 'wrong fs-verity digest' && ! grep -q ' /m1 ' /proc/self/mountinfo"
no_leftovers refused-mounts-leave-nothing

echo "--- crafted image: verity (require)"
check mount-crafted-require mount.composefs /images/crafted.cfs /m1 -o "basedir=$S,verity"
expect_rd require-good              /m1/good      /expect/good
expect_rd require-wrong-digest      /m1/wrongdig  OPEN_EIO
expect_rd require-missing-digest    /m1/nodig     OPEN_EIO
expect_rd require-object-noverity   /m1/noverity  OPEN_EIO
check stat-works-on-bad-files stat /m1/wrongdig
kmsg 3
cfs_umount /m1
echo "--- crafted image: verity=on"
check mount-crafted-on mount.composefs /images/crafted.cfs /m1 -o "basedir=$S,verity=on"
expect_rd on-missing-digest-ok  /m1/nodig     /expect/good
expect_rd on-wrong-digest       /m1/wrongdig  OPEN_EIO
expect_rd on-object-noverity    /m1/noverity  OPEN_EIO
cfs_umount /m1
echo "--- crafted image: verity=off ignores digests"
check mount-crafted-off mount.composefs /images/crafted.cfs /m1 -o "basedir=$S,verity=off"
expect_rd off-wrong-digest-ignored /m1/wrongdig /expect/good
expect_rd off-noverity-ignored     /m1/noverity /expect/noverity
cfs_umount /m1
echo "--- conflicts refused (also on this 6.6-6.15 kernel)"
out=$(mount.composefs /images/crafted.cfs /m1 -o "basedir=$S,verity,metacopy=off" 2>&1)
check "conflict-metacopy-off ($out)" sh -c "echo '$out' | grep -q 'metacopy=off and verity conflict'"

echo "--- malformed trusted.overlay.metacopy (image built by hand): fsck names what the kernel refuses"
section_start
# The kernel is the oracle: each file of malformed.cfs is opened and read under verity=require,
# verity=on and the default mode (no verity option). `cfs fsck` has no mode: it must name
# exactly the files a verity=on mount refuses; under require the kernel also refuses the files
# it logs as having no digest, and the default mode must refuse nothing fsck calls clean.
MC=/images/malformed.cfs
cfs fsck --json "$MC" --basedir "$S" > /run/mc-fsck.json 2>&1; rc=$?
mc_set() { tr ' ' '\n' | grep . | sort -u | tr '\n' ' '; }
FSCK=$(grep -o '(file /[^)]*)' /run/mc-fsck.json | sed 's|(file /||; s|)$||' | mc_set)
echo "  fsck (rc=$rc) names: $FSCK"
check "malformed-fsck-exit-1 (rc=$rc)" test "$rc" = 1
for mode in require on default; do
  opt="basedir=$S"; [ $mode = default ] || opt="$opt,verity=$mode"
  dmesg -c > /dev/null
  check "malformed-mount-$mode" cfs mount "$MC" /m1 -o "$opt"
  refused=""; table=""
  for f in $MC_FILES; do got=$(rd /m1/$f)
    case "$got" in
      "OK:$(cat /expect/$f)") table="$table $f=ok";;
      OK:*) table="$table $f=WRONG-BYTES"; fail "malformed-$mode-$f-served-other-bytes";;
      OPEN_EIO|READ_EIO) table="$table $f=$got"; refused="$refused $f";;
      # e.g. ERANGE for a value longer than the kernel's buffer: refused all the same.
      *) table="$table $f=$(echo "${got##*: }" | tr ' ' _)"; refused="$refused $f";;
    esac
  done
  cfs_umount /m1
  echo "  kernel verity=$mode:$table"
  refused=$(echo $refused | mc_set)
  # pr_warn_ratelimited allows 10 messages per 5 s per call site: keep the no-digest cases fewer.
  nodigest=$(dmesg | sed -n "s/.*metacopy file '\([^']*\)' has no digest specified.*/\1/p" | mc_set)
  case $mode in
    on) check "malformed-fsck-names-what-verity=on-refuses (kernel: $refused)" test "$FSCK" = "$refused";;
    require) want=$(echo $FSCK $nodigest | mc_set)
      echo "  verity=require: no digest per the kernel log: $nodigest"
      check "malformed-require-refuses-fsck's-files-plus-no-digest (kernel: $refused)" test "$want" = "$refused";;
    default) extra=""; for f in $refused; do case " $FSCK " in *" $f "*) ;; *) extra="$extra $f";; esac; done
      check "malformed-default-mode-refuses-nothing-fsck-calls-clean (extra:$extra)" test -z "$extra";;
  esac
done
no_leftovers malformed-no-leftovers
section_end malformed-metacopy

echo "--- copy-up keeps the digest (upper on tmpfs)"
mkdir -p /run/up /run/wk
check mount-upper-on cfs mount /disk/images/clean.cfs /m1 -o "basedir=$S,verity=on,upperdir=/run/up,workdir=/run/wk,rw"
check chmod-metacopy-copyup chmod 600 /m1/good
X=$(xattr_hex trusted.overlay.metacopy /run/up/good)
check "copyup-upper-metacopy-has-digest ($X)" test "$X" = "0x00240001$D_GOOD"
check copyup-upper-has-no-data test "$(stat -c %b /run/up/good)" = 0
expect_rd copyup-read-after /m1/good /expect/good
echo appended >> /m1/good
X=$(xattr_hex trusted.overlay.metacopy /run/up/good)
check data-copyup-removes-metacopy test -z "$X"
cfs_umount /m1
rm -rf /run/up /run/wk; mkdir -p /run/up /run/wk
check mount-upper-require cfs mount /images/crafted.cfs /m1 -o "basedir=$S,verity,upperdir=/run/up,workdir=/run/wk"
check chmod-good-require chmod 600 /m1/good
X=$(xattr_hex trusted.overlay.metacopy /run/up/good)
check "require-copyup-keeps-digest ($X)" test "$X" = "0x00240001$D_GOOD"
out=$(chmod 600 /m1/nodig 2>&1)
check "require-copyup-without-digest-EIO" sh -c "echo '$out' | grep -q 'Input/output error' && ! test -e /run/up/nodig"
cfs_umount /m1

echo "--- SHA-512 image (cfs create --hash sha512): 68-byte metacopy, 126-hex object names"
S5=/disk/store512
ok=1
for d in $D5_GOOD_PATH $D5_VICTIM_PATH; do fsverity enable --hash-alg=sha512 "$S5/$d" || ok=0; done
check fsverity-enable-sha512-objects test $ok = 1
check fsverity-enable-sha256-on-a-sha512-object fsverity enable --hash-alg=sha256 "$S5/$D5_SHA256V_PATH"
check fsverity-enable-sha512-image fsverity enable --hash-alg=sha512 /disk/images/sha512.cfs
M=$(fsverity measure "$S5/$D5_GOOD_PATH" | cut -d' ' -f1)
check "sha512-kernel-measure-equals-host-digest" test "$M" = "sha512:$D5_GOOD"
out=$(cfs mount --json /disk/images/sha512.cfs /m1 -o "basedir=$S5,digest=$D5_IMG" 2>&1)
echo "  $out"
check "sha512 mount digest= (kernel measurement)" sh -c "echo '$out' | grep -q '\"digest_check\": \"kernel\"'"
check "sha512 mount verity=require" grep -q 'verity=require' /proc/self/mountinfo
expect_rd sha512-good-read        /m1/good       /expect/good
expect_rd sha512-inline-read      /m1/small      /expect/small
expect_rd sha512-victim-before    /m1/victim512  /expect/victim512
expect_rd sha512-object-with-sha256-verity-EIO /m1/sha256v512 OPEN_EIO
kmsg 2
cfs_umount /m1
out=$(mount.composefs /disk/images/sha512.cfs /m1 -o "basedir=$S5,digest=$D_IMG_CLEAN" 2>&1)
check "sha512-image-wrong-digest-refused" sh -c "echo '$out' | grep -q 'wrong fs-verity digest' && ! grep -q ' /m1 ' /proc/self/mountinfo"
rm "$S5/$D5_VICTIM_PATH"
cat /expect/tampered > "$S5/$D5_VICTIM_PATH"; fsverity enable --hash-alg=sha512 "$S5/$D5_VICTIM_PATH"
check mount-sha512-after-replace mount.composefs /disk/images/sha512.cfs /m1 -o "basedir=$S5,verity=require"
expect_rd sha512-replaced-object-EIO /m1/victim512 OPEN_EIO
expect_rd sha512-good-still-reads    /m1/good      /expect/good
kmsg 2
cfs_umount /m1
no_leftovers sha512-no-leftovers

echo "--- secure repository (no --insecure): fs-verity on meta.json and every object, mounts require it"
R=/disk/repo
mkdir -p /src/usr/lib
for i in 1 2 3; do seq 1 $((i * 300)) > /src/usr/lib/f$i; done
echo small > /src/usr/small
check repo-init-secure cfs repo init --repo $R
check repo-meta-json-has-verity fsverity measure $R/meta.json
check repo-create cfs create --repo $R /src --name os/v1
ok=1; n=0
for o in $R/objects/*/*; do n=$((n+1)); m=$(fsverity measure "$o" 2>/dev/null | cut -d' ' -f1)
  [ "$m" = "sha512:$(basename $(dirname $o))$(basename $o)" ] || ok=0; done
check "repo-objects-have-sha512-verity-matching-their-names ($n objects)" test $ok = 1 -a $n = 4
check repo-fsck-clean cfs repo fsck --repo $R
check repo-mount cfs mount --repo $R os/v1 /m1
check repo-mount-verity-require grep -q ' /m1 .*verity=require' /proc/self/mountinfo
for i in 1 2 3; do seq 1 $((i * 300)) > /expect/f$i; done
expect_rd repo-read-f1 /m1/usr/lib/f1 /expect/f1
expect_rd repo-read-f3 /m1/usr/lib/f3 /expect/f3
cfs_umount /m1
# f2's object replaced by other content, f3's by the same content without fs-verity.
for f in f2 f3; do V=$(fsverity digest --hash-alg=sha512 --compact /src/usr/lib/$f)
  eval O_$f="$R/objects/${V%${V#??}}/${V#??}"; done
rm "$O_f2" "$O_f3"
cat /expect/tampered > "$O_f2"
cat /src/usr/lib/f3 > "$O_f3"
cfs repo fsck --repo $R > /run/fsck.out 2>&1; rc=$?
cat /run/fsck.out | sed 's/^/  fsck: /'
check "repo-fsck-tampered-objects (rc=$rc)" sh -c "test $rc = 1 && grep -q 'object-digest-mismatch: .*${O_f2#$R/}' /run/fsck.out && grep -q 'object-verity-missing: .*${O_f3#$R/}' /run/fsck.out"
check repo-mount-after-tamper cfs mount --repo $R os/v1 /m1
expect_rd repo-tampered-object-EIO /m1/usr/lib/f2 OPEN_EIO
expect_rd repo-object-without-verity-EIO /m1/usr/lib/f3 OPEN_EIO
expect_rd repo-good-still-reads    /m1/usr/lib/f1 /expect/f1
check repo-untag-while-mounted cfs repo untag --repo $R os/v1
check repo-gc-while-mounted cfs repo gc --repo $R
expect_rd repo-mounted-image-kept-by-its-lease /m1/usr/lib/f1 /expect/f1
cfs_umount /m1
check repo-gc-after-umount cfs repo gc --repo $R
check repo-gc-removed-everything sh -c "test -z \"\$(find $R/objects -type f)\""
no_leftovers repo-no-leftovers

echo "--- OCI image (umoci, two gzip layers) in a secure repository: cfs oci mount requires verity"
section_start
RO=/disk/ocirepo
check oci-repo-init-secure cfs repo init --repo $RO
check oci-pull cfs oci pull --repo $RO oci:/oci:t img
check oci-fsck-clean cfs oci fsck --repo $RO
check oci-mount cfs oci mount --repo $RO img /m1
check oci-mount-verity-require grep -q ' /m1 .*verity=require' /proc/self/mountinfo
expect_rd oci-read-layer1-file  /m1/usr/bin/tool         /expect/oci-tool
expect_rd oci-read-inline       /m1/etc/small            /expect/oci-small
expect_rd oci-read-layer2-wins  /m1/usr/share/doc/readme /expect/oci-readme
expect_rd oci-read-layer2-file  /m1/usr/lib/new          /expect/oci-new
check oci-whiteout-applied test ! -e /m1/usr/share/gone
cfs_umount /m1
# The tool's object replaced by other content that has SHA-512 fs-verity of its own.
V=$(fsverity digest --hash-alg=sha512 --compact /expect/oci-tool)
O="$RO/objects/${V%${V#??}}/${V#??}"
check "oci-object-has-verity ${O#$RO/}" fsverity measure "$O"
rm "$O"; cat /expect/tampered > "$O"; fsverity enable --hash-alg=sha512 "$O"
cfs oci fsck --repo $RO > /run/ocifsck.out 2>&1; rc=$?
sed 's/^/  oci fsck: /' /run/ocifsck.out | head -n 5
check "oci-fsck-names-the-tampered-object (rc=$rc)" sh -c "test $rc = 1 && grep -q '${O#$RO/objects/}' /run/ocifsck.out"
check oci-mount-after-tamper cfs oci mount --repo $RO img /m1
expect_rd oci-tampered-object-EIO    /m1/usr/bin/tool OPEN_EIO
expect_rd oci-other-file-still-reads /m1/usr/lib/new  /expect/oci-new
cfs_umount /m1
no_leftovers oci-no-leftovers
section_end oci-secure-repository

echo "--- Debian image (debootstrap minbase + a package layer) in a secure repository"
section_start
RD=/disk/debrepo
check deb-repo-init-secure cfs repo init --repo $RD
check deb-pull cfs oci pull --repo $RD oci:/disk/debian:bookworm deb
section_end debian-pull
check deb-mount cfs oci mount --repo $RD deb /m1
check deb-mount-verity-require grep -q ' /m1 .*verity=require' /proc/self/mountinfo
# dpkg-query and hello run from the image: the loader, libc and dpkg's database all come
# through overlayfs with the kernel checking each object against the image's digest.
n=$(chroot /m1 /usr/bin/dpkg-query -W -f '${db:Status-Status}\n' 2>/run/dpkg.err | grep -c '^installed$')
check "deb-dpkg-query-installed ($n, the status file lists $DEB_INSTALLED)" test "$n" = "$DEB_INSTALLED"
check deb-hello-runs test "$(chroot /m1 /usr/bin/hello)" = "Hello, world!"
check deb-ping-keeps-capability test "$(xattr_hex security.capability /m1/usr/bin/ping)" = "$DEB_PING_CAP"
cfs_umount /m1
no_leftovers deb-no-leftovers
section_end debian-secure-repository

echo "--- tamper 1: object replaced by other content (with fs-verity)"
rm "$S/$D_REPL_PATH" "$S/$D_REPL2_PATH"
cat /expect/tampered > "$S/$D_REPL_PATH"; fsverity enable "$S/$D_REPL_PATH"
cat /expect/replaced2 > "$S/$D_REPL2_PATH"; fsverity enable "$S/$D_REPL2_PATH"
check mount-after-replace mount.composefs /disk/images/clean.cfs /m1 -o "basedir=$S,verity"
expect_rd replaced-other-content-EIO /m1/replaced  OPEN_EIO
expect_rd replaced-same-content-OK   /m1/replaced2 /expect/replaced2
cfs_umount /m1

echo "--- tamper 2: one byte of a verity object flipped on disk"
umount /disk
printf 'X' | dd of=/dev/vda bs=1 seek=$((CORR_BLK*4096+100)) conv=notrunc 2>/dev/null; sync
echo 3 > /proc/sys/vm/drop_caches
check remount-ext4 mount -t ext4 /dev/vda /disk
check mount-after-flip mount.composefs /disk/images/clean.cfs /m1 -o "basedir=$S,verity"
expect_rd byte-flip-READ_EIO /m1/corrupt READ_EIO
kmsg 2
cfs_umount /m1
no_leftovers final-no-leftovers
echo "GUEST-SUMMARY pass=$NPASS fail=$NFAIL"
echo GUEST-DONE
umount /disk
poweroff -f
