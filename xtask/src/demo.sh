set -x
vgcreate -y tvg /dev/vda /dev/vdb
mkfs.ext4 -q /dev/vdc
blkid -p -o export /dev/vdc; echo rc=$?
blkid -p -o export /dev/vdd; echo rc=$?
blkid -p -o export /dev/vda; echo rc=$?
vgcreate -y tvg2 /dev/vdc; echo rc=$?
lvcreate --type thin-pool -L 1G -n pool --poolmetadatasize 4M --chunksize 64k --addtag a=b --addtag thinsr_sr=1234 tvg
lvcreate -L 8M -n meta --addtag thinsr_meta tvg
lvcreate -V 1G -T tvg/pool -n thin1
ls -la /dev/mapper /dev/tvg
dmsetup table; dmsetup status
lvm fullreport --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size,lv_tags,lv_attr,pool_lv,data_percent,lv_active,segtype,lv_device_open --configreport vg -o vg_name,vg_size,vg_free,vg_tags,vg_extent_size --configreport pv -o pv_name,pv_size,vg_name tvg
lvm fullreport --reportformat json --units b --nosuffix --configreport lv -o lv_name,vg_name,lv_size,lv_tags,lv_attr,pool_lv,data_percent,lv_active,segtype,lv_device_open --configreport vg -o vg_name,vg_size,vg_free,vg_tags,vg_extent_size --configreport pv -o pv_name,pv_size,vg_name --configreport pvseg -o pv_name --configreport seg -o lv_name 
lvchange -an tvg/pool tvg/thin1; dmsetup ls
lvchange -ay tvg/pool; dmsetup ls
lvs -a
