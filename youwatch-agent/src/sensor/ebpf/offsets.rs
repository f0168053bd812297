//! Kernel struct field offsets from the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! Rust eBPF emits no CO-RE relocations, so the exec program receives these as a read-only
//! global instead of hard-coding any layout.

use std::path::{Path, PathBuf};

use btf_rs::{Btf, BtfType, Type};
use youwatch_common::KernelOffsets;

/// Where the kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error(
        "kernel BTF {path} is missing: this kernel was built without CONFIG_DEBUG_INFO_BTF=y. \
         YouWatch needs BTF to read kernel struct layouts; use a kernel with BTF (all major \
         distributions since 2021 ship it)"
    )]
    NoBtf { path: PathBuf },
    #[error("reading kernel BTF {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("kernel BTF {path} has no field {field} in struct {ty}: unsupported kernel layout")]
    MissingField {
        path: PathBuf,
        ty: &'static str,
        field: &'static str,
    },
    #[error("kernel BTF {path}: field {ty}.{field} is a bit-field, the exec sensor cannot read it")]
    BitField {
        path: PathBuf,
        ty: &'static str,
        field: &'static str,
    },
}

/// Reads every offset the exec program needs from the BTF at `path`.
pub fn from_btf_file(path: &Path) -> Result<KernelOffsets, OffsetsError> {
    if !path.exists() {
        return Err(OffsetsError::NoBtf {
            path: path.to_owned(),
        });
    }
    let btf = Btf::from_file(path).map_err(|e| OffsetsError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let lookup = |ty: &'static str, field: &'static str| -> Result<u32, OffsetsError> {
        match field_offset(&btf, ty, field) {
            Some(Ok(bits)) => Ok(bits / 8),
            Some(Err(())) => Err(OffsetsError::BitField {
                path: path.to_owned(),
                ty,
                field,
            }),
            None => Err(OffsetsError::MissingField {
                path: path.to_owned(),
                ty,
                field,
            }),
        }
    };
    Ok(KernelOffsets {
        task_real_parent: lookup("task_struct", "real_parent")?,
        task_tgid: lookup("task_struct", "tgid")?,
        task_comm: lookup("task_struct", "comm")?,
        task_mm: lookup("task_struct", "mm")?,
        task_signal: lookup("task_struct", "signal")?,
        mm_arg_start: lookup("mm_struct", "arg_start")?,
        mm_arg_end: lookup("mm_struct", "arg_end")?,
        signal_tty: lookup("signal_struct", "tty")?,
        tty_index: lookup("tty_struct", "index")?,
        tty_driver: lookup("tty_struct", "driver")?,
        driver_major: lookup("tty_driver", "major")?,
        driver_minor_start: lookup("tty_driver", "minor_start")?,
        binprm_filename: lookup("linux_binprm", "filename")?,
        ready: 1,
    })
}

/// Bit offset of `field` in struct `ty`, looking through anonymous struct/union members
/// (`mm_struct` keeps its fields in one). `Some(Err(()))` for a bit-field.
fn field_offset(btf: &Btf, ty: &str, field: &str) -> Option<Result<u32, ()>> {
    let types = btf.resolve_types_by_name(ty).ok()?;
    // A name can also be a typedef or forward declaration; take the struct with members.
    types.iter().find_map(|t| match t {
        Type::Struct(s) if !s.members.is_empty() => member_offset(btf, s, field, 0),
        _ => None,
    })
}

fn member_offset(btf: &Btf, s: &btf_rs::Struct, field: &str, base: u32) -> Option<Result<u32, ()>> {
    for member in &s.members {
        let name = btf.resolve_name(member).unwrap_or_default();
        let offset = base + member.bit_offset();
        if name == field {
            return Some(match member.bitfield_size() {
                Some(size) if size != 0 => Err(()),
                _ => Ok(offset),
            });
        }
        if name.is_empty()
            && let Some(inner) = anonymous_aggregate(btf, member)
            && let Some(found) = member_offset(btf, &inner, field, offset)
        {
            return Some(found);
        }
    }
    None
}

/// The struct or union type of an anonymous member, through any qualifiers.
fn anonymous_aggregate(btf: &Btf, member: &dyn BtfType) -> Option<btf_rs::Struct> {
    let mut ty = btf.resolve_chained_type(member).ok()?;
    for _ in 0..8 {
        match ty {
            Type::Struct(s) | Type::Union(s) => return Some(s),
            Type::Const(ref q) | Type::Volatile(ref q) | Type::Restrict(ref q) => {
                ty = btf.resolve_chained_type(q).ok()?;
            }
            Type::Typedef(ref t) => ty = btf.resolve_chained_type(t).ok()?,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_btf_names_the_path_and_the_fix() {
        let err = from_btf_file(Path::new("/nonexistent/vmlinux")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/vmlinux") && msg.contains("CONFIG_DEBUG_INFO_BTF"),
            "{msg}"
        );
    }

    #[test]
    fn running_kernel_offsets_are_plausible() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run on a kernel with BTF"
            );
            eprintln!("skipped: {VMLINUX_BTF} absent");
            return;
        }
        let off = from_btf_file(path).unwrap();
        assert_eq!(off.ready, 1);
        // Fields inside mm_struct's anonymous struct must be found, and in order.
        assert!(off.mm_arg_end == off.mm_arg_start + 8, "{off:?}");
        assert!(
            off.task_real_parent > 0 && off.task_comm > off.task_tgid,
            "{off:?}"
        );
    }
}
