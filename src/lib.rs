//! thinsr
