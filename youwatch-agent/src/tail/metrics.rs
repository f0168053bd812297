//! Counters of a follower. Register them under a sub-registry labelled with the source
//! (`registry.sub_registry_with_label(("source".into(), "waf".into()))`) when several
//! followers run in one agent.

use prometheus_client::{metrics::counter::Counter, registry::Registry};

#[derive(Clone, Debug, Default)]
pub struct TailMetrics {
    pub bytes_read: Counter,
    /// The path came to name another file (rename rotation, delete-and-recreate, symlink swap).
    pub rotations: Counter,
    /// The file shrank or its first bytes changed under us (copytruncate).
    pub truncations: Counter,
    pub long_lines_skipped: Counter,
    /// A rotated-away file ended without a newline; its last bytes were handed out as a line.
    pub unterminated_lines: Counter,
}

impl TailMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "youwatch_tail_read_bytes",
            "Bytes read from followed files",
            self.bytes_read.clone(),
        );
        registry.register(
            "youwatch_tail_rotations",
            "Times a followed path came to name a new file (rename, delete-and-recreate, symlink swap)",
            self.rotations.clone(),
        );
        registry.register(
            "youwatch_tail_truncations",
            "Times a followed file was truncated in place (copytruncate)",
            self.truncations.clone(),
        );
        registry.register(
            "youwatch_tail_long_lines_skipped",
            "Lines longer than the configured cap, skipped",
            self.long_lines_skipped.clone(),
        );
        registry.register(
            "youwatch_tail_unterminated_lines",
            "Last lines of rotated files that never got their newline, handed out as they were",
            self.unterminated_lines.clone(),
        );
    }
}
