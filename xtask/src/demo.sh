# The tour `cargo xtask demo` runs inside the test VM: real LVM, real dm-thin.
set -e
say() { printf '\n### %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
fails() { printf '$ %s\n' "$*"; if "$@"; then echo "demo: that should have failed"; exit 1; fi; }

say "Owned mode: thinsr takes two blank disks and makes them a storage repository"
run thinsr sr create /dev/vda /dev/vdb --name "Fast local"
run thinsr sr show "Fast local"

say "Shared mode: an existing volume group with the admin's own LVs"
run lvm vgcreate -q -y vg0 /dev/vdc
run lvm lvcreate -q -y -n root -L 512m vg0
run lvm lvcreate -q -y -n home -L 256m vg0
dd if=/dev/urandom of=/dev/vg0/home bs=1M count=16 2>/dev/null
before=$(sha256sum /dev/vg0/home | cut -d' ' -f1)
run thinsr sr introduce vg0 --name "Beside the OS" --pool-size 50%
run thinsr sr show "Beside the OS"
run thinsr sr list

say "thinsr never overwrites a disk that holds data"
mkfs.ext4 -q /dev/vdd
fails thinsr sr create /dev/vdd --name scratch

say "Forget unregisters; introduce brings the same SR back from its own metadata"
run thinsr sr forget "Fast local"
run thinsr sr list
run thinsr sr introduce Fast_local
run thinsr --json sr list

say "Destroy: shared mode removes only thinsr's LVs; the admin's data is untouched"
run thinsr sr destroy "Beside the OS" --yes
run lvm lvs vg0
after=$(sha256sum /dev/vg0/home | cut -d' ' -f1)
echo "home before: $before"
echo "home after:  $after"
[ "$before" = "$after" ]

say "Errors are coded, for people and for xapi (--json)"
fails thinsr sr show "No such SR"
fails thinsr --json sr show "No such SR"

say "Owned mode: destroy returns the disks blank"
run thinsr sr destroy "Fast local" --yes
run lvm pvs
blkid -p /dev/vda || echo "/dev/vda: no signature left"
echo
echo "demo finished"
