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
    #[error("'{0}' is a template: its image is read-only and lives outside the SR")]
    VdiIsTemplate(String),
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
    #[error("invalid URI '{uri}': {why}")]
    InvalidUri { uri: String, why: String },
    #[error("invalid size '{input}': {why}")]
    InvalidSize { input: String, why: String },
    #[error("invalid name '{input}': {why}")]
    InvalidName { input: String, why: String },
    #[error("{0}")]
    InvalidArgument(String),
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

    /// The stable code, as xapi and scripts see it.
    pub fn code(&self) -> &'static str {
        match self {
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
            Error::VdiIsTemplate(_) => "VDI_IS_TEMPLATE",
            Error::NotATemplate(_) => "NOT_A_TEMPLATE",
            Error::TemplateInUse { .. } => "TEMPLATE_IN_USE",
            Error::TemplateExists { .. } => "TEMPLATE_EXISTS",
            Error::ImageUnreadable { .. } => "IMAGE_UNREADABLE",
            Error::InvalidUri { .. } => "INVALID_URI",
            Error::InvalidSize { .. } => "INVALID_SIZE",
            Error::InvalidName { .. } => "INVALID_NAME",
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
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
            Error::Io { .. } => "IO_ERROR",
        }
    }

    /// Parameters for the xapi error shape: the names involved, then the message.
    pub fn params(&self) -> Vec<String> {
        let mut p = match self {
            Error::SrNotFound(s) | Error::SrBusy(s) | Error::SrNotAttached(s) => vec![s.clone()],
            Error::VgNotFound(s) | Error::VgExists(s) | Error::LvNotFound(s) => vec![s.clone()],
            Error::VdiNotFound(s)
            | Error::VdiReadOnly(s)
            | Error::VdiIsTemplate(s)
            | Error::NotATemplate(s) => vec![s.clone()],
            Error::TemplateInUse { template, users } => {
                let mut p = vec![template.clone()];
                p.extend(users.iter().cloned());
                p
            }
            Error::TemplateExists { uri, name } => vec![uri.clone(), name.clone()],
            Error::ImageUnreadable { uri, .. } | Error::InvalidUri { uri, .. } => vec![uri.clone()],
            Error::VdiAttached { vdi, .. }
            | Error::ShrinkRefused { vdi, .. }
            | Error::VdiIncomplete { vdi, .. } => vec![vdi.clone()],
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
            _ => vec![],
        };
        p.push(self.to_string());
        p
    }

    /// What the admin can do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::SrNotFound(_) | Error::NoSr => {
                "'thinsr sr list' shows the registered storage repositories; 'thinsr sr introduce VG' registers an existing one".into()
            }
            Error::SrAmbiguous { .. } => "name it by uuid or volume group instead".into(),
            Error::SrRequired(_) => "choose one with --sr".into(),
            Error::SrExists { .. } => "'thinsr sr forget' it first to register it again".into(),
            Error::SrBusy(_) => "try again in a moment; set THINSR_LOCK_TIMEOUT (seconds) to wait longer".into(),
            Error::SrHasAttachedVdis { .. } => "detach those disks first (stop the VMs using them)".into(),
            Error::SrNotAttached(_) => "'thinsr sr attach SR' activates it".into(),
            Error::DeviceInUse { .. } => {
                "thinsr does not overwrite a disk that holds data; check it is the right disk, then add --force to wipe it".into()
            }
            Error::VgExists(_) => "choose another --name".into(),
            Error::FileExists(_) => "choose a path that does not exist yet; thinsr will not overwrite a file".into(),
            Error::ConfirmationRequired(_) => "run it on a terminal to confirm, or add --yes".into(),
            Error::NotRoot => "run it with sudo or as root".into(),
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
            Error::Cancelled => "nothing was left half-made".into(),
            Error::VdiIsTemplate(_) => "clone it ('thinsr vdi clone TEMPLATE') to get a disk of your own; 'thinsr template forget' unregisters it".into(),
            Error::NotATemplate(_) => "'thinsr template list' shows the templates".into(),
            Error::TemplateInUse { .. } => "their unwritten blocks are read from the template: destroy them (or detach what is attached) first".into(),
            Error::InvalidUri { .. } => "templates are file:///path, nbd://host[:port]/export, or scheme://... handled by <scheme-dir>/<scheme>".into(),
            Error::ImageUnreadable { .. } => "check the image exists and qemu-img can read it ('qemu-img info')".into(),
            Error::MetadataCorrupt { .. } => "both metadata copies failed their checks; keep the volume group as it is and report the problem".into(),
            _ => return None,
        })
    }

    /// Exit status: 2 for usage errors, 130 when cancelled (as for SIGINT), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
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
