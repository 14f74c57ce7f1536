# The tour `cargo xtask demo` runs inside the test VM: real LVM, real dm-thin.
set -e
say() { printf '\n### %s\n' "$*"; }
# Each command printed as it could be pasted: arguments with spaces or quotes quoted.
q() {
    case $1 in
    '' | *[!A-Za-z0-9_./:=+@%,-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
    *) printf '%s' "$1" ;;
    esac
}
show() { printf '$'; for a in "$@"; do printf ' '; q "$a"; done; printf '\n'; }
run() { show "$@"; "$@"; }
fails() { show "$@"; if "$@"; then echo "demo: that should have failed"; exit 1; fi; }

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

say "VDIs: thin disks named after their label, so lvs reads like a list of VMs' disks"
run thinsr vdi create "Windows 10 (64-bit)" --size 2G --sr "Fast local"
run thinsr vdi create "Windows 10 (64-bit)" --size 2G --sr "Fast local"
run thinsr vdi create "Debian 12 web" --size 1G --sr "Beside the OS" --description "nginx"
run lvm lvs -o lv_name,lv_size,lv_attr Fast_local

say "Write to a disk, snapshot it, write again: the snapshot keeps the old data"
dev=$(thinsr vdi attach Windows_10_64-bit)
echo "attached at $dev"
dd if=/dev/urandom of="$dev" bs=1M count=8 conv=fsync 2>/dev/null
first=$(dd if="$dev" bs=1M count=8 2>/dev/null | sha256sum | cut -d' ' -f1)
run thinsr vdi snapshot Windows_10_64-bit --name "before update"
dd if=/dev/urandom of="$dev" bs=1M count=8 conv=fsync 2>/dev/null
run thinsr vdi clone "before update" --name "test VM"
snap=$(thinsr vdi attach "before update")
echo "snapshot now: $(dd if="$snap" bs=1M count=8 2>/dev/null | sha256sum | cut -d' ' -f1)"
echo "was:          $first"
run thinsr vdi detach "before update"
run thinsr vdi detach Windows_10_64-bit
run thinsr vdi list --sr "Fast local"

say "Preallocated: zeroed completely before first use, with progress"
run thinsr vdi create database --size 1G --preallocate --sr "Fast local"
run thinsr vdi resize database +512M
fails thinsr vdi resize database 256M
run thinsr vdi set database vdi-type user
run thinsr vdi show database
fails thinsr vdi destroy "Windows 10 (64-bit)"
run thinsr vdi destroy "test VM" --yes

say "Pools grow the moment they fill: 'thinsr pool watch' waits on the kernel's events"
run thinsr pool set "Fast local" --threshold 70
thinsr pool watch --interval 1 &
watcher=$!
sleep 2
dev=$(thinsr vdi attach Windows_10_64-bit+1)
echo "writing 1.7 GiB at full speed into a thin disk of the 2 GiB pool..."
dd if=/dev/zero of="$dev" bs=4M count=425 oflag=direct 2>/dev/null
sleep 2
run thinsr pool show "Fast local"
kill -TERM $watcher
wait $watcher || true
run thinsr pool maintain
echo "(exit status $?: the watcher grew the pool already, so cron, the safety net, is quiet)"
run thinsr vdi detach Windows_10_64-bit+1

say "Templates: a read-only image anywhere, cloned into VM disks without copying it"
truncate -s 1G /tmp/debian-12.raw
printf 'Debian 12 boot sector' | dd of=/tmp/debian-12.raw conv=notrunc 2>/dev/null
qemu-img convert -O qcow2 /tmp/debian-12.raw /tmp/debian-12.qcow2
sum=$(sha256sum /tmp/debian-12.qcow2 | cut -d' ' -f1)
run thinsr template introduce file:///tmp/debian-12.qcow2 --sr "Fast local"
run thinsr vdi clone debian-12 --name "web01 disk"
run thinsr vdi clone debian-12 --name "web02 disk"
run thinsr template list
web01=$(thinsr vdi attach "web01 disk")
web02=$(thinsr vdi attach "web02 disk")
echo "web01's disk is $web01, web02's is $web02"
echo "web01 reads: $(head -c 21 "$web01")  (from the template: web01 has written nothing)"
printf 'web01 was here' | dd of="$web01" conv=notrunc,fsync 2>/dev/null
echo "after web01 wrote its first 14 bytes:"
echo "  web01 reads: $(head -c 21 "$web01")  (from its own disk: the block it wrote holds the template's bytes around its write)"
echo "  web02 reads: $(head -c 21 "$web02")  (still from the template)"
run dmsetup ls
run thinsr vdi list --sr "Fast local"
fails thinsr template forget debian-12
run thinsr vdi detach "web01 disk"
run thinsr vdi detach "web02 disk"
echo "template image unchanged: $([ "$sum" = "$(sha256sum /tmp/debian-12.qcow2 | cut -d' ' -f1)" ] && echo yes)"

say "A template on a (slow) NBD server, cached on this host: each block is fetched once"
ip link set lo up
truncate -s 256M /tmp/remote.raw
printf 'Served over NBD, cached locally' | dd of=/tmp/remote.raw conv=notrunc 2>/dev/null
qemu-nbd --fork --persistent --read-only --format=raw --bind=127.0.0.1 --port=10810 --export-name=win /tmp/remote.raw
run thinsr template introduce nbd://127.0.0.1:10810/win --name "Remote Windows" --sr "Fast local" --cache
run thinsr vdi clone "Remote Windows" --name "vm3 disk"
vm3=$(thinsr vdi attach "vm3 disk")
echo "vm3 reads: $(head -c 31 "$vm3")"
run thinsr vdi detach "vm3 disk"
run thinsr template warm "Remote Windows"
run thinsr template show "Remote Windows"

say "Clones of a local copy, or of a raw image, read in the kernel: no qemu-nbd in their path"
vm3=$(thinsr vdi attach "vm3 disk")
echo "vm3 reads: $(head -c 31 "$vm3") (from the local copy: a thin device of ours)"
run dmsetup table
run thinsr vdi detach "vm3 disk"
truncate -s 512M /tmp/alpine.raw
printf 'Alpine, read through a loop device' | dd of=/tmp/alpine.raw conv=notrunc 2>/dev/null
run thinsr template introduce file:///tmp/alpine.raw --sr "Fast local"
run thinsr vdi clone alpine --name "vm4 disk"
vm4=$(thinsr vdi attach "vm4 disk")
echo "vm4 reads: $(head -c 34 "$vm4")"
run /usr/sbin/losetup --list --output NAME,RO,DIO,BACK-FILE
run thinsr vdi detach "vm4 disk"

say "Export reads only the blocks that hold data; import writes only what is not zero"
run thinsr export "web01 disk" -o /tmp/web01.qcow2
run qemu-img check /tmp/web01.qcow2
run thinsr vdi snapshot Windows_10_64-bit --name monday
run thinsr export monday -o /tmp/monday.qcow2
dev=$(thinsr vdi attach Windows_10_64-bit)
dd if=/dev/urandom of="$dev" bs=1M count=4 seek=100 conv=fsync 2>/dev/null
echo "(4 MiB written to Windows_10_64-bit since monday, while attached)"
run thinsr export Windows_10_64-bit --base monday -o /tmp/since-monday.qcow2 --backing-name monday.qcow2
run qemu-img info /tmp/since-monday.qcow2
run qemu-img compare "$dev" /tmp/since-monday.qcow2
run thinsr vdi detach Windows_10_64-bit

say "Incremental backups: what changed, from the pool's own maps (no tracking at run time)"
run thinsr vdi cbt Windows_10_64-bit on
run thinsr vdi snapshot Windows_10_64-bit --name tuesday
run thinsr vdi changed-blocks monday tuesday
run thinsr --yes vdi data-destroy monday
echo "(monday's data is gone; its block map is kept, so the question still has an answer)"
run thinsr vdi changed-blocks monday tuesday
run thinsr --yes vdi revert Windows_10_64-bit tuesday
run thinsr vdi show Windows_10_64-bit
run thinsr vdi import /tmp/web01.qcow2 --name "web01 restored" --sr "Fast local"
restored=$(thinsr vdi attach "web01 restored")
echo "web01 restored reads: $(head -c 21 "$restored")  (from its own disk: imported from web01's export)"
run thinsr vdi detach "web01 restored"

say "A disk in use copied while it runs: the kernel mirrors its writes, only data travels"
thinsr vdi attach "web01 restored" >/dev/null
run thinsr vdi copy "web01 restored" --to "Beside the OS" --name "web01 moved"
moved=$(thinsr vdi attach "web01 moved")
echo "web01 moved reads: $(head -c 21 "$moved")  (from its own disk, in the other SR)"
run thinsr vdi detach "web01 moved"
run thinsr vdi detach "web01 restored"

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
