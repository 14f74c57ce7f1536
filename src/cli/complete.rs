//! Names offered by shell completion: `thinsr __complete sr|vdi`, handled before clap so it
//! stays out of the CLI's help, man pages and completions. Read from the registry and the
//! SRs' metadata only: no lvm call, so a TAB answers at once.

use crate::engine::registry::{config_dir_from_env, RegistryFile};

/// Runs `thinsr __complete KIND` when those are the arguments; false otherwise.
pub fn run_if_asked(args: &[String]) -> bool {
    let [_, cmd, kind] = args else { return false };
    if cmd != "__complete" {
        return false;
    }
    for name in names(&RegistryFile::in_dir(&config_dir_from_env()), kind) {
        println!("{name}");
    }
    true
}

/// What to offer for `kind` (`sr`, `vdi` or `template`); anything unreadable offers nothing.
pub fn names(registry: &RegistryFile, kind: &str) -> Vec<String> {
    let Ok(reg) = registry.load() else {
        return Vec::new();
    };
    let mut names: Vec<String> = match kind {
        // By volume group: SR names may hold spaces, VG names never do.
        "sr" => reg.srs.iter().map(|e| e.vg.to_string()).collect(),
        "vdi" | "template" => reg
            .srs
            .iter()
            .filter_map(|e| {
                let store = e.meta_store();
                store.exists().then(|| store.read().ok()).flatten()
            })
            .flat_map(|(m, _)| m.vdis)
            .filter(|v| kind == "vdi" || v.is_template())
            .map(|v| {
                if !v.is_template() {
                    v.lv.into()
                } else if v
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
                {
                    v.name
                } else {
                    // A label the shell would split: its uuid prefix finds it as well.
                    v.uuid.chars().take(8).collect()
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    names.sort();
    names.dedup();
    names
}

/// Appended to clap's bash script: after clap's own completion, offers SR and VDI names
/// where a command takes one, asking `thinsr __complete`.
pub const BASH_DYNAMIC: &str = r#"
# thinsr: names of registered SRs and VDIs, asked of thinsr itself (no lvm call).
_thinsr_dynamic() {
    _thinsr "$@"
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} kind="" i w
    local -a pos=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case "$w" in
            --config|--scheme-dir|--sr|--size|--name|--description|--file|--pool-size|--pool|\
            --format|--base|--backing-name|-o|--output) ((i++)) ;;
            -*) ;;
            *) pos+=("$w") ;;
        esac
    done
    if [[ $prev == --sr ]]; then
        kind=sr
    elif [[ $prev == --base ]]; then
        kind=vdi
    elif [[ ${#pos[@]} -eq 1 && ${pos[0]} == export && $cur != -* ]]; then
        kind=vdi
    elif [[ ${#pos[@]} -eq 2 && $cur != -* ]]; then
        case "${pos[0]} ${pos[1]}" in
            "vdi show"|"vdi destroy"|"vdi snapshot"|"vdi clone"|"vdi resize"|"vdi rename"|\
            "vdi set-description"|"vdi set"|"vdi unset"|"vdi attach"|"vdi detach") kind=vdi ;;
            "sr attach"|"sr detach"|"sr forget"|"sr destroy"|"sr show"|"sr rename"|\
            "sr set-description") kind=sr ;;
            "template forget"|"template show"|"template cache"|"template warm") kind=template ;;
        esac
    fi
    if [[ -n $kind ]]; then
        local IFS=$'\n'
        COMPREPLY=($(compgen -W "$(thinsr __complete "$kind" 2>/dev/null)" -- "$cur"))
    fi
}
complete -F _thinsr_dynamic -o bashdefault -o default thinsr
"#;
