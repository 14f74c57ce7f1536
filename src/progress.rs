//! How long work reports how far it got. The engine calls these; the CLI decides whether
//! that is a bar, plain lines or nothing.

pub trait Progress {
    /// Work on `total` bytes starts; `what` says what it is ("zeroing vm-disk").
    fn begin(&self, what: &str, total: u64);
    /// `done` of the total bytes are finished.
    fn set(&self, done: u64);
    /// The work ended (finished, failed or cancelled).
    fn end(&self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _: &str, _: u64) {}
    fn set(&self, _: u64) {}
    fn end(&self) {}
}
