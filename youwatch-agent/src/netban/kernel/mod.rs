//! The node ban's kernel side: the `youwatch-netban` object (embedded), its deny lists pinned
//! in bpffs so that a restarted agent finds the bans in force, the programs attached to
//! interfaces ([`attach`]), the lists as a table of CIDRs ([`table`]) and the source sample
//! ([`sample`]).
//!
//! Pinned: the IPv4 and IPv6 lists and the drop counters (the slot numbers in the lists index
//! the counters, so both survive together). A pinned map whose shape differs from what this
//! build expects (another `max_entries`, an older layout) is removed and created anew: the
//! agent fills it from the ledger.

pub mod attach;
pub mod sample;
pub mod table;

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapInfo},
};
use youwatch_common::netban::{BanEntry, names};

pub use attach::{AttachMode, Attached, Programs};
pub use sample::Sampler;
pub use table::{DenyTable, KernelTable};

/// The kernel object, built by `build.rs` from `youwatch-ebpf/src/netban/`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("YOUWATCH_NETBAN_OBJECT"));

/// `BPF_FS_MAGIC` (`include/uapi/linux/magic.h`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "this youwatch-agent was built without its kernel programs (YOUWATCH_EBPF_STUB was set \
         for a check-only build): rebuild without it, after `cargo xtask build-ebpf`"
    )]
    NoPrograms,
    #[error(
        "node_ban.pin_dir {dir}: {why}; mount bpffs there (`mount -t bpf bpf /sys/fs/bpf`, or \
         the DaemonSet's hostPath /sys/fs/bpf), or set node_ban.pin_dir: \"\" to pin nothing"
    )]
    PinDir { dir: PathBuf, why: String },
    #[error("loading the node ban's eBPF programs failed: {0}")]
    Load(String),
    #[error("node ban eBPF map {name}: {message}")]
    Map { name: &'static str, message: String },
    #[error("interface {interface}: {message}")]
    Interface { interface: String, message: String },
}

/// What [`load`] needs.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Entries per list (and drop counters).
    pub max_entries: u32,
    /// bpffs directory for the pinned lists; `None`: nothing pinned.
    pub pin_dir: Option<PathBuf>,
    /// Which program to load: the classifier, or the XDP program.
    pub xdp: bool,
}

/// The maps user space works with.
pub struct Maps {
    pub table: KernelTable,
    pub sampler: Sampler,
}

/// Loads the object and the program `options` asks for (attach it with
/// [`Programs::attach`]). Pinned lists are reused when their shape matches.
pub fn load(options: &LoadOptions) -> Result<(Programs, Maps), KernelError> {
    if OBJECT.is_empty() {
        return Err(KernelError::NoPrograms);
    }
    let pins = match &options.pin_dir {
        Some(dir) => Some(prepare_pins(dir, options.max_entries)?),
        None => None,
    };
    let mut loader = EbpfLoader::new();
    // No kernel BTF needed: the object has no CO-RE relocations.
    loader
        .btf(None)
        .map_max_entries(names::V4_MAP, options.max_entries)
        .map_max_entries(names::V6_MAP, options.max_entries)
        .map_max_entries(names::DROPS_MAP, options.max_entries);
    if let Some(pins) = &pins {
        for (name, path) in pins {
            loader.map_pin_path(name, path.as_path());
        }
    }
    let mut ebpf = loader
        .load(OBJECT)
        .map_err(|e| KernelError::Load(chain(e)))?;
    let table = KernelTable::new(
        take(&mut ebpf, names::V4_MAP)?,
        take(&mut ebpf, names::V6_MAP)?,
        take(&mut ebpf, names::DROPS_MAP)?,
    )?;
    let sampler = Sampler::new(
        take(&mut ebpf, names::SOURCES_MAP)?,
        take(&mut ebpf, names::PORTS_MAP)?,
    )?;
    let programs = Programs::load(ebpf, options.xdp)?;
    Ok((programs, Maps { table, sampler }))
}

/// The pinned maps and their paths, after removing pins of another shape.
fn prepare_pins(dir: &Path, max_entries: u32) -> Result<Vec<(&'static str, PathBuf)>, KernelError> {
    let pin_dir = |why: String| KernelError::PinDir {
        dir: dir.to_owned(),
        why,
    };
    std::fs::create_dir_all(dir).map_err(|e| pin_dir(format!("cannot create it: {e}")))?;
    if !on_bpffs(dir).map_err(|e| pin_dir(e.to_string()))? {
        return Err(pin_dir("not on a bpf filesystem".into()));
    }
    let entry = size_of::<BanEntry>() as u32;
    // (map, key size, value size): an LPM key is the prefix length and the address.
    let shapes = [
        (names::V4_MAP, 4 + 4, entry),
        (names::V6_MAP, 4 + 16, entry),
        (names::DROPS_MAP, 4, 8),
    ];
    let mut pins = Vec::new();
    for (name, key_size, value_size) in shapes {
        let path = dir.join(name);
        if let Ok(info) = MapInfo::from_pin(&path) {
            let same = info.key_size() == key_size
                && info.value_size() == value_size
                && info.max_entries() == max_entries;
            if !same {
                tracing::warn!(
                    path = %path.display(),
                    max_entries = info.max_entries(),
                    wanted = max_entries,
                    "a pinned node ban map of another shape (node_ban.max_entries changed, or another version): replacing it; bans are reloaded from the ledger"
                );
                // Both lists and the counters go together: slots index the counters.
                unpin_all(dir);
            }
        }
        pins.push((name, path));
    }
    Ok(pins)
}

/// Removes the pinned maps in `dir` (the maps live on while something holds them).
pub fn unpin_all(dir: &Path) {
    for name in [names::V4_MAP, names::V6_MAP, names::DROPS_MAP] {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %dir.join(name).display(), error = %e, "cannot unpin"),
        }
    }
}

fn on_bpffs(dir: &Path) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statfs fills the struct; a valid NUL-terminated path.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_type as i64 == BPF_FS_MAGIC)
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, KernelError> {
    ebpf.take_map(name).ok_or(KernelError::Map {
        name,
        message: "missing from the object".into(),
    })
}

/// An error and its sources on one line (aya keeps the verifier log in a source).
pub(super) fn chain(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(e))
}
