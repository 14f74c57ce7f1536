//! The one error type. Every variant has a stable code (what xapi clients and scripts match
//! on), parameters, a message for humans and, where there is one, a hint about what to do.

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage repository '{0}' not found")]
    SrNotFound(String),
    #[error("'{name}' matches several storage repositories: {}", .candidates.join(", "))]
    SrAmbiguous {
        name: String,
        candidates: Vec<String>,
    },
    #[error("no storage repository is registered on this host")]
    NoSr,
    #[error("more than one storage repository is registered: {}", .0.join(", "))]
    SrRequired(Vec<String>),
    #[error("storage repository '{name}' is already registered (uuid {uuid})")]
    SrExists { name: String, uuid: String },
    #[error("storage repository '{0}' is busy: another thinsr command holds its lock")]
    SrBusy(String),
    #[error("storage repository '{sr}' has attached disks: {}", .lvs.join(", "))]
    SrHasAttachedVdis { sr: String, lvs: Vec<String> },
    #[error("storage repository '{0}' is not attached")]
    SrNotAttached(String),
    #[error("volume group '{0}' not found")]
    VgNotFound(String),
    #[error("volume group '{0}' already exists")]
    VgExists(String),
    #[error("logical volume '{0}' not found")]
    LvNotFound(String),
    #[error("'{lv}' is not a thin pool (it is {kind})")]
    NotAThinPool { lv: String, kind: String },
    #[error("device '{0}' not found")]
    DeviceNotFound(String),
    #[error("'{0}' is not a block device")]
    NotABlockDevice(String),
    #[error("device '{device}' holds {found}")]
    DeviceInUse { device: String, found: String },
    #[error("device '{0}' is named twice")]
    DeviceRepeated(String),
    #[error("'{0}' already exists")]
    FileExists(String),
    #[error("not enough space in volume group '{vg}': {wanted} wanted, {free} free{detail}")]
    NoSpace {
        vg: String,
        wanted: String,
        free: String,
        /// Where the rest went, when that helps (starts with "; ").
        detail: String,
    },
    #[error("SR '{sr}' would be over-committed: {virtual_total} of thin disks on a pool of {pool} (limit {limit}x)")]
    PoolOvercommitted {
        sr: String,
        virtual_total: String,
        pool: String,
        limit: f64,
    },
    #[error("thin pool {pool} failed its check: {output}")]
    PoolCheckFailed { pool: String, output: String },
    #[error("VDI '{0}' not found")]
    VdiNotFound(String),
    #[error("'{name}' matches several VDIs: {}", .candidates.join(", "))]
    VdiAmbiguous {
        name: String,
        candidates: Vec<String>,
    },
    #[error("VDI '{vdi}' is attached ({device})")]
    VdiAttached { vdi: String, device: String },
    #[error("VDI '{0}' is a read-only snapshot")]
    VdiReadOnly(String),
    #[error("shrinking VDI '{vdi}' from {from} to {to} would destroy the data beyond {to}")]
    ShrinkRefused {
        vdi: String,
        from: String,
        to: String,
    },
    #[error("VDI '{vdi}' is incomplete: {why}")]
    VdiIncomplete { vdi: String, why: String },
    #[error("the mirror of VDI '{vdi}' failed: {why}")]
    MirrorFailed { vdi: String, why: String },
    #[error("'{0}' is a template: its image is read-only and lives outside the SR")]
    VdiIsTemplate(String),
    #[error("the data of VDI '{0}' was destroyed: only its changed-block map remains")]
    VdiDataDestroyed(String),
    #[error("'{0}' is not a template")]
    NotATemplate(String),
    #[error("template '{template}' is in use: {}", .users.join(", "))]
    TemplateInUse {
        template: String,
        users: Vec<String>,
    },
    #[error("'{uri}' is already introduced as template '{name}'")]
    TemplateExists { uri: String, name: String },
    #[error("cannot read image '{uri}': {why}")]
    ImageUnreadable { uri: String, why: String },
    #[error("server {server} cannot be reached: {why}")]
    ServerUnreachable { server: String, why: String },
    #[error("template image {uri} changed on its server: {why}")]
    TemplateSourceChanged { uri: String, why: String },
    #[error("invalid URI '{uri}': {why}")]
    InvalidUri { uri: String, why: String },
    #[error("invalid size '{input}': {why}")]
    InvalidSize { input: String, why: String },
    #[error("invalid name '{input}': {why}")]
    InvalidName { input: String, why: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("a pool watcher is already running (pid {0})")]
    WatcherRunning(u32),
    #[error("{0}")]
    Usage(String),
    #[error("'{0}' would destroy data and needs confirmation")]
    ConfirmationRequired(String),
    #[error("cancelled")]
    Cancelled,
    #[error("thinsr must run as root to manage storage")]
    NotRoot,
    #[error("lvm {command} failed: {message}")]
    LvmFailed { command: String, message: String },
    #[error("{tool} failed: {message}")]
    CommandFailed { tool: String, message: String },
    #[error("device-mapper: {0}")]
    DmFailed(String),
    #[error("metadata of storage repository '{sr}' is unreadable: {why}")]
    MetadataCorrupt { sr: String, why: String },
    #[error("metadata does not fit its volume: {size} bytes, at most {max}")]
    MetadataTooLarge { size: usize, max: usize },
    #[error("configuration file {path} is invalid: {why}")]
    ConfigInvalid { path: String, why: String },
    #[error("refusing {what} {}: {why}", path.display())]
    UnsafePath {
        what: String,
        path: std::path::PathBuf,
        why: String,
    },
    #[error("hook {hook} refused ({script}): {message}")]
    HookRefused {
        hook: String,
        script: String,
        /// The first line of what the hook wrote on stderr, or how it ended.
        message: String,
    },
    #[error("the stream for replica '{vdi}' is relative to snapshot {base}, which this SR does not hold")]
    ReplicaBaseMissing { vdi: String, base: String },
    #[error("thin pool {pool} does not zero new blocks: a new VDI would show the old bytes of the disk and of destroyed VDIs; turn zeroing on with 'lvchange --zero y {pool}'")]
    PoolNotZeroing { pool: String },
    /// A step failed and so did undoing what came before it: something may be left
    /// half-made. The cause's code, parameters and exit status stand; the message says both.
    #[error("{cause}; undoing what it had done failed too, {what}: {undo}")]
    RollbackFailed {
        cause: Box<Error>,
        /// The undo step, as a phrase ("removing the new LV vg/x").
        what: String,
        undo: Box<Error>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// This error, after `undo` ran to take back what the failed operation had done: a
    /// failed undo is reported with the cause (and `sr check --repair` named), never dropped.
    pub fn undo<T>(self, what: &str, undo: impl FnOnce() -> Result<T>) -> Error {
        match undo() {
            Ok(_) => self,
            Err(u) => Error::RollbackFailed {
                cause: Box::new(self),
                what: what.into(),
                undo: Box::new(u),
            },
        }
    }

    /// The stable code, as xapi and scripts see it.
    pub fn code(&self) -> &'static str {
        match self {
            Error::RollbackFailed { cause, .. } => cause.code(),
            Error::SrNotFound(_) => "SR_NOT_FOUND",
            Error::SrAmbiguous { .. } => "SR_AMBIGUOUS",
            Error::NoSr => "SR_NOT_FOUND",
            Error::SrRequired(_) => "SR_REQUIRED",
            Error::SrExists { .. } => "SR_EXISTS",
            Error::SrBusy(_) => "SR_BUSY",
            Error::SrHasAttachedVdis { .. } => "SR_HAS_ATTACHED_VDIS",
            Error::SrNotAttached(_) => "SR_NOT_ATTACHED",
            Error::VgNotFound(_) => "VG_NOT_FOUND",
            Error::VgExists(_) => "VG_EXISTS",
            Error::LvNotFound(_) => "LV_NOT_FOUND",
            Error::NotAThinPool { .. } => "NOT_A_THIN_POOL",
            Error::DeviceNotFound(_) => "DEVICE_NOT_FOUND",
            Error::NotABlockDevice(_) => "NOT_A_BLOCK_DEVICE",
            Error::DeviceInUse { .. } => "DEVICE_IN_USE",
            Error::DeviceRepeated(_) => "INVALID_ARGUMENT",
            Error::FileExists(_) => "FILE_EXISTS",
            Error::NoSpace { .. } => "NO_SPACE",
            Error::VdiNotFound(_) => "VDI_NOT_FOUND",
            Error::PoolOvercommitted { .. } => "POOL_OVERCOMMITTED",
            Error::PoolCheckFailed { .. } => "POOL_CHECK_FAILED",
            Error::VdiAmbiguous { .. } => "VDI_AMBIGUOUS",
            Error::VdiAttached { .. } => "VDI_ATTACHED",
            Error::VdiReadOnly(_) => "VDI_READ_ONLY",
            Error::ShrinkRefused { .. } => "SHRINK_REFUSED",
            Error::VdiIncomplete { .. } => "VDI_INCOMPLETE",
            Error::MirrorFailed { .. } => "MIRROR_FAILED",
            Error::VdiIsTemplate(_) => "VDI_IS_TEMPLATE",
            Error::VdiDataDestroyed(_) => "VDI_DATA_DESTROYED",
            Error::NotATemplate(_) => "NOT_A_TEMPLATE",
            Error::TemplateInUse { .. } => "TEMPLATE_IN_USE",
            Error::TemplateExists { .. } => "TEMPLATE_EXISTS",
            Error::ImageUnreadable { .. } => "IMAGE_UNREADABLE",
            Error::ServerUnreachable { .. } => "SERVER_UNREACHABLE",
            Error::TemplateSourceChanged { .. } => "TEMPLATE_SOURCE_CHANGED",
            Error::InvalidUri { .. } => "INVALID_URI",
            Error::InvalidSize { .. } => "INVALID_SIZE",
            Error::InvalidName { .. } => "INVALID_NAME",
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::WatcherRunning(_) => "WATCHER_RUNNING",
            Error::Usage(_) => "USAGE",
            Error::ConfirmationRequired(_) => "CONFIRMATION_REQUIRED",
            Error::Cancelled => "CANCELLED",
            Error::NotRoot => "NOT_ROOT",
            Error::LvmFailed { .. } => "LVM_FAILED",
            Error::CommandFailed { .. } => "COMMAND_FAILED",
            Error::DmFailed(_) => "DM_FAILED",
            Error::MetadataCorrupt { .. } => "METADATA_CORRUPT",
            Error::MetadataTooLarge { .. } => "METADATA_TOO_LARGE",
            Error::ConfigInvalid { .. } => "CONFIG_INVALID",
            Error::UnsafePath { .. } => "UNSAFE_PATH",
            Error::HookRefused { .. } => "HOOK_REFUSED",
            Error::ReplicaBaseMissing { .. } => "REPLICA_BASE_MISSING",
            Error::PoolNotZeroing { .. } => "POOL_NOT_ZEROING",
            Error::Io { .. } => "IO_ERROR",
        }
    }

    /// Parameters for the xapi error shape: the names involved, then the message.
    pub fn params(&self) -> Vec<String> {
        let mut p = match self {
            Error::RollbackFailed { cause, .. } => {
                let mut p = cause.params();
                p.pop();
                p
            }
            Error::SrNotFound(s) | Error::SrBusy(s) | Error::SrNotAttached(s) => vec![s.clone()],
            Error::VgNotFound(s) | Error::VgExists(s) | Error::LvNotFound(s) => vec![s.clone()],
            Error::VdiNotFound(s)
            | Error::VdiReadOnly(s)
            | Error::VdiIsTemplate(s)
            | Error::VdiDataDestroyed(s)
            | Error::NotATemplate(s) => vec![s.clone()],
            Error::TemplateInUse { template, users } => {
                let mut p = vec![template.clone()];
                p.extend(users.iter().cloned());
                p
            }
            Error::TemplateExists { uri, name } => vec![uri.clone(), name.clone()],
            Error::ServerUnreachable { server, why } => vec![server.clone(), why.clone()],
            Error::ImageUnreadable { uri, .. }
            | Error::InvalidUri { uri, .. }
            | Error::TemplateSourceChanged { uri, .. } => vec![uri.clone()],
            Error::VdiAttached { vdi, .. }
            | Error::ShrinkRefused { vdi, .. }
            | Error::VdiIncomplete { vdi, .. }
            | Error::MirrorFailed { vdi, .. } => vec![vdi.clone()],
            Error::VdiAmbiguous { name, candidates } | Error::SrAmbiguous { name, candidates } => {
                let mut p = vec![name.clone()];
                p.extend(candidates.iter().cloned());
                p
            }
            Error::DeviceNotFound(s) | Error::NotABlockDevice(s) | Error::FileExists(s) => {
                vec![s.clone()]
            }
            Error::DeviceInUse { device, found } => vec![device.clone(), found.clone()],
            Error::SrExists { uuid, .. } => vec![uuid.clone()],
            Error::InvalidSize { input, .. } | Error::InvalidName { input, .. } => {
                vec![input.clone()]
            }
            Error::LvmFailed { command, message } => vec![command.clone(), message.clone()],
            Error::HookRefused { hook, script, .. } => vec![hook.clone(), script.clone()],
            Error::ReplicaBaseMissing { vdi, base } => vec![vdi.clone(), base.clone()],
            _ => vec![],
        };
        p.push(self.to_string());
        p
    }

    /// What the admin can do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::RollbackFailed { .. } => "'thinsr sr check --repair' finds what was left half-made and finishes or removes it".into(),
            Error::SrNotFound(_) | Error::NoSr => {
                "'thinsr sr list' shows the registered storage repositories; 'thinsr sr introduce VG' registers an existing one".into()
            }
            Error::SrAmbiguous { .. } => "name it by uuid or volume group instead".into(),
            Error::SrRequired(_) => "choose one with --sr".into(),
            Error::SrExists { .. } => "'thinsr sr forget' it first to register it again".into(),
            Error::SrBusy(_) => "try again in a moment; set THINSR_LOCK_TIMEOUT (seconds) to wait longer".into(),
            Error::WatcherRunning(_) => "one watcher serves every SR of the host: 'systemctl status thinsr-pool-watch' shows it".into(),
            Error::SrHasAttachedVdis { .. } => "detach those disks first (stop the VMs using them)".into(),
            Error::SrNotAttached(_) => "'thinsr sr attach SR' activates it".into(),
            Error::DeviceInUse { .. } => {
                "thinsr does not overwrite a disk that holds data; check it is the right disk, then add --force to wipe it".into()
            }
            Error::VgExists(_) => "choose another --name".into(),
            Error::FileExists(_) => "choose a path that does not exist yet; thinsr will not overwrite a file".into(),
            Error::ConfirmationRequired(_) => "run it on a terminal to confirm, or add --yes".into(),
            Error::NotRoot => "run it with sudo or as root".into(),
            Error::UnsafePath { path, .. } => format!("thinsr runs and reads as root only what root alone can change: 'chown root:root {0}' and 'chmod go-w {0}' (and the same for each directory above it that is not root's alone)", path.display()),
            Error::HookRefused { script, .. } => format!("the admin's hook {script} decided against it; nothing was changed"),
            Error::ReplicaBaseMissing { .. } => "send a full stream (without --base) once, or take as base a snapshot this SR holds a replica of: 'thinsr vdi list' shows each replica's source snapshot".into(),
            Error::PoolNotZeroing { .. } => "or add --yes to let thinsr turn it on (blocks written before stay as they are)".into(),
            Error::InvalidSize { .. } => "sizes look like 512M, 20G or 1.5T (binary units); a bare number is bytes".into(),
            Error::NoSpace { .. } => "'thinsr sr show' shows where the space went".into(),
            Error::PoolOvercommitted { .. } => "destroy unused disks, raise the limit with 'thinsr pool set SR --max-overcommit RATIO', or grow the pool with 'thinsr pool extend'".into(),
            Error::PoolCheckFailed { pool, .. } => format!("stop the VMs on this SR, then: 'thinsr sr detach SR', 'lvconvert --repair {pool}', 'thin_check' the repaired metadata, and 'thinsr sr attach SR'; keep the old metadata LV LVM leaves behind until the VMs are checked"),
            Error::VdiNotFound(_) => "'thinsr vdi list' shows the VDIs of attached SRs; name one by uuid, uuid prefix, LV name, label or SR/name".into(),
            Error::VdiAmbiguous { .. } => "name it by uuid, or as SR/name".into(),
            Error::VdiAttached { .. } => "stop the VM using it, then 'thinsr vdi detach' it".into(),
            Error::VdiReadOnly(_) => "clone it ('thinsr vdi clone') to get a writable copy".into(),
            Error::ShrinkRefused { .. } => "shrink the filesystem inside first, then add --allow-shrink".into(),
            Error::VdiIncomplete { .. } => "run the interrupted command again to finish it, or destroy the VDI".into(),
            Error::MirrorFailed { .. } => "the VDI here is intact and in use as before; the copy at the destination is not complete: start the migration or 'thinsr vdi mirror' again".into(),
            Error::Cancelled => "nothing was left half-made".into(),
            Error::VdiDataDestroyed(_) => "it can still be the base of 'thinsr vdi changed-blocks' and 'thinsr export --base'; use a snapshot that kept its data for anything else".into(),
            Error::VdiIsTemplate(_) => "clone it ('thinsr vdi clone TEMPLATE') to get a disk of your own; 'thinsr template forget' unregisters it".into(),
            Error::NotATemplate(_) => "'thinsr template list' shows the templates".into(),
            Error::TemplateInUse { .. } => "their unwritten blocks are read from the template: destroy them (or detach what is attached) first".into(),
            Error::InvalidUri { .. } => "templates are file:///path, nbd://host[:port]/export, nfs://host/export/file, smb://[user@]host/share/file, https://host/file, or scheme://... handled by <scheme-dir>/<scheme>".into(),
            Error::ServerUnreachable { .. } => "check the server runs and this host reaches it (firewall, name); clones of its templates fail their reads until it is back, and 'thinsr sr check' names its share".into(),
            Error::ImageUnreadable { .. } => "check the image exists and qemu-img can read it ('qemu-img info')".into(),
            Error::TemplateSourceChanged { .. } => "the pieces already on this host stay readable; put the introduced version back on the server, or introduce the new file as a new template".into(),
            Error::MetadataCorrupt { .. } => "both metadata copies failed their checks; keep the volume group as it is and report the problem".into(),
            _ => return None,
        })
    }

    /// Exit status: 2 for usage errors, 130 when cancelled (as for SIGINT), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::RollbackFailed { cause, .. } => cause.exit_code(),
            Error::Cancelled => 130,
            Error::Usage(_)
            | Error::InvalidSize { .. }
            | Error::InvalidName { .. }
            | Error::InvalidArgument(_)
            | Error::InvalidUri { .. } => 2,
            _ => 1,
        }
    }
}

/// `r`, after `cleanup` ran whatever `r` was: a cleanup that fails fails an `Ok`, and joins
/// an `Err` as its failed undo.
pub fn finally<T, U>(r: Result<T>, what: &str, cleanup: impl FnOnce() -> Result<U>) -> Result<T> {
    match r {
        Ok(v) => cleanup().map(|_| v),
        Err(e) => Err(e.undo(what, cleanup)),
    }
}

/// The xapi error shape: `{"code","params","backtrace"}`, every field present.
#[derive(serde::Serialize)]
pub struct XapiError<'a> {
    pub code: &'a str,
    pub params: Vec<String>,
    pub backtrace: Backtrace,
}

#[derive(serde::Serialize, Default)]
pub struct Backtrace {
    pub error: String,
    pub files: Vec<String>,
    pub lines: Vec<u64>,
}

impl Error {
    pub fn to_xapi(&self) -> XapiError<'_> {
        XapiError {
            code: self.code(),
            params: self.params(),
            backtrace: Backtrace::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of every variant: a new one must be added here, or this fails to compile
    /// (the match below has no wildcard).
    fn all() -> Vec<Error> {
        let s = || "x".to_string();
        let v = vec![
            Error::SrNotFound(s()),
            Error::SrAmbiguous {
                name: s(),
                candidates: vec![s()],
            },
            Error::NoSr,
            Error::SrRequired(vec![s()]),
            Error::SrExists {
                name: s(),
                uuid: s(),
            },
            Error::SrBusy(s()),
            Error::SrHasAttachedVdis {
                sr: s(),
                lvs: vec![s()],
            },
            Error::SrNotAttached(s()),
            Error::VgNotFound(s()),
            Error::VgExists(s()),
            Error::LvNotFound(s()),
            Error::NotAThinPool { lv: s(), kind: s() },
            Error::DeviceNotFound(s()),
            Error::NotABlockDevice(s()),
            Error::DeviceInUse {
                device: s(),
                found: s(),
            },
            Error::DeviceRepeated(s()),
            Error::FileExists(s()),
            Error::NoSpace {
                vg: s(),
                wanted: s(),
                free: s(),
                detail: String::new(),
            },
            Error::PoolOvercommitted {
                sr: s(),
                virtual_total: s(),
                pool: s(),
                limit: 2.0,
            },
            Error::PoolCheckFailed {
                pool: s(),
                output: s(),
            },
            Error::VdiNotFound(s()),
            Error::VdiAmbiguous {
                name: s(),
                candidates: vec![s()],
            },
            Error::VdiAttached {
                vdi: s(),
                device: s(),
            },
            Error::VdiReadOnly(s()),
            Error::ShrinkRefused {
                vdi: s(),
                from: s(),
                to: s(),
            },
            Error::VdiIncomplete { vdi: s(), why: s() },
            Error::MirrorFailed { vdi: s(), why: s() },
            Error::VdiIsTemplate(s()),
            Error::VdiDataDestroyed(s()),
            Error::NotATemplate(s()),
            Error::TemplateInUse {
                template: s(),
                users: vec![s()],
            },
            Error::TemplateExists {
                uri: s(),
                name: s(),
            },
            Error::ImageUnreadable { uri: s(), why: s() },
            Error::TemplateSourceChanged { uri: s(), why: s() },
            Error::ServerUnreachable {
                server: s(),
                why: s(),
            },
            Error::InvalidUri { uri: s(), why: s() },
            Error::InvalidSize {
                input: s(),
                why: s(),
            },
            Error::InvalidName {
                input: s(),
                why: s(),
            },
            Error::InvalidArgument(s()),
            Error::UnsafePath {
                what: s(),
                path: s().into(),
                why: s(),
            },
            Error::HookRefused {
                hook: s(),
                script: s(),
                message: s(),
            },
            Error::PoolNotZeroing { pool: s() },
            Error::ReplicaBaseMissing {
                vdi: s(),
                base: s(),
            },
            Error::WatcherRunning(1),
            Error::Usage(s()),
            Error::ConfirmationRequired(s()),
            Error::Cancelled,
            Error::NotRoot,
            Error::LvmFailed {
                command: s(),
                message: s(),
            },
            Error::CommandFailed {
                tool: s(),
                message: s(),
            },
            Error::DmFailed(s()),
            Error::MetadataCorrupt { sr: s(), why: s() },
            Error::MetadataTooLarge { size: 1, max: 0 },
            Error::ConfigInvalid {
                path: s(),
                why: s(),
            },
            Error::io(s(), std::io::Error::other("e")),
            Error::NoSpace {
                vg: s(),
                wanted: s(),
                free: s(),
                detail: String::new(),
            }
            .undo("removing x", || Err::<(), _>(Error::LvNotFound(s()))),
        ];
        for e in &v {
            // Exhaustive on purpose: see above.
            match e {
                Error::SrNotFound(_)
                | Error::SrAmbiguous { .. }
                | Error::NoSr
                | Error::SrRequired(_)
                | Error::SrExists { .. }
                | Error::SrBusy(_)
                | Error::SrHasAttachedVdis { .. }
                | Error::SrNotAttached(_)
                | Error::VgNotFound(_)
                | Error::VgExists(_)
                | Error::LvNotFound(_)
                | Error::NotAThinPool { .. }
                | Error::DeviceNotFound(_)
                | Error::NotABlockDevice(_)
                | Error::DeviceInUse { .. }
                | Error::DeviceRepeated(_)
                | Error::FileExists(_)
                | Error::NoSpace { .. }
                | Error::PoolOvercommitted { .. }
                | Error::PoolCheckFailed { .. }
                | Error::VdiNotFound(_)
                | Error::VdiAmbiguous { .. }
                | Error::VdiAttached { .. }
                | Error::VdiReadOnly(_)
                | Error::ShrinkRefused { .. }
                | Error::VdiIncomplete { .. }
                | Error::MirrorFailed { .. }
                | Error::VdiIsTemplate(_)
                | Error::VdiDataDestroyed(_)
                | Error::NotATemplate(_)
                | Error::TemplateInUse { .. }
                | Error::TemplateExists { .. }
                | Error::ImageUnreadable { .. }
                | Error::TemplateSourceChanged { .. }
                | Error::ServerUnreachable { .. }
                | Error::InvalidUri { .. }
                | Error::InvalidSize { .. }
                | Error::InvalidName { .. }
                | Error::InvalidArgument(_)
                | Error::WatcherRunning(_)
                | Error::Usage(_)
                | Error::ConfirmationRequired(_)
                | Error::Cancelled
                | Error::NotRoot
                | Error::LvmFailed { .. }
                | Error::CommandFailed { .. }
                | Error::DmFailed(_)
                | Error::MetadataCorrupt { .. }
                | Error::MetadataTooLarge { .. }
                | Error::ConfigInvalid { .. }
                | Error::UnsafePath { .. }
                | Error::HookRefused { .. }
                | Error::ReplicaBaseMissing { .. }
                | Error::PoolNotZeroing { .. }
                | Error::RollbackFailed { .. }
                | Error::Io { .. } => {}
            }
        }
        v
    }

    #[test]
    fn every_error_renders_in_the_xapi_shape() {
        for e in all() {
            let v = serde_json::to_value(e.to_xapi()).unwrap();
            let code = v["code"].as_str().unwrap();
            assert!(
                !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{code}"
            );
            let params = v["params"].as_array().unwrap();
            assert_eq!(
                params.last().unwrap(),
                &e.to_string(),
                "{code}: the message comes last"
            );
            assert!(params.iter().all(|p| p.is_string()), "{code}");
            assert!(v["backtrace"]["error"].is_string(), "{code}");
            assert!(v["backtrace"]["files"].is_array() && v["backtrace"]["lines"].is_array());
            assert!(matches!(e.exit_code(), 1 | 2 | 130), "{code}");
        }
    }

    /// An undo that fails is never dropped: the error keeps the cause's code, names both
    /// failures and sends the admin to `sr check --repair`. An undo that works leaves the
    /// cause alone.
    #[test]
    fn a_failed_undo_is_reported_with_its_cause() {
        let cause = || Error::VdiNotFound("web".into());
        let e = cause().undo("removing the new LV vg/web", || {
            Err::<(), _>(Error::LvmFailed {
                command: "lvremove".into(),
                message: "device busy".into(),
            })
        });
        assert_eq!(e.code(), "VDI_NOT_FOUND");
        assert_eq!(e.exit_code(), 1);
        let text = e.to_string();
        assert!(
            text.starts_with("VDI 'web' not found; undoing what it had done failed too, removing the new LV vg/web: lvm lvremove failed: device busy"),
            "{text}"
        );
        assert!(e.hint().unwrap().contains("sr check --repair"));
        assert_eq!(e.params(), ["web".to_string(), text]);
        let e = cause().undo("removing it", || Ok(()));
        assert!(matches!(e, Error::VdiNotFound(_)));
    }
}
