//! Writes man/ and completions/ under the directory given (the repository root).

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).expect("usage: thinsr-gen ROOT"));
    for (dir, files) in [
        ("man", thinsr::cli::docs::man_pages()),
        ("completions", thinsr::cli::docs::completions()),
    ] {
        let dir = root.join(dir);
        // Start clean so a removed command leaves no stale page behind.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create output directory");
        for (name, content) in files {
            std::fs::write(dir.join(&name), content).expect("write generated file");
            println!("{}/{name}", dir.display());
        }
    }
}
