#[test]
fn kernel_has_dm_thin() {
    let t = std::fs::read_to_string("/proc/misc").unwrap();
    assert!(t.contains("device-mapper"), "{t}");
    let out = std::process::Command::new("lvm").args(["pvcreate", "/dev/vda"]).output().unwrap();
    println!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
}
