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
    #[error("kernel BTF {path} has no type {ty}: unsupported kernel layout")]
    MissingType { path: PathBuf, ty: &'static str },
    #[error("kernel BTF {path}: {what}: unsupported kernel layout")]
    Unsupported { path: PathBuf, what: String },
    #[error("kernel BTF {path}: field {ty}.{field} is a bit-field, the exec sensor cannot read it")]
    BitField {
        path: PathBuf,
        ty: &'static str,
        field: &'static str,
    },
}

/// Where the overlayfs module exposes its BTF when it is not built into the kernel.
const OVERLAY_MODULE_BTF: &str = "/sys/kernel/btf/overlay";

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
    let layout = Layout { btf: &btf, path };
    let field = |ty, name| layout.field(ty, name);
    // `pid_type` is an enum: its PIDTYPE_PGID value indexes `signal_struct.pids[]`.
    let pgid_index = layout.enum_value("pid_type", "PIDTYPE_PGID")?;
    let pointer = size_of::<u64>() as u32;
    // The exec program reads capability sets as one u64 (u32[2] before 6.3, u64 since).
    let cap_size = layout.typedef_size("kernel_cap_t")?;
    if cap_size != 8 {
        return Err(OffsetsError::Unsupported {
            path: path.to_owned(),
            what: format!("kernel_cap_t is {cap_size} bytes, the exec sensor reads 8"),
        });
    }
    // Fields read together must sit next to each other (8 bytes apart).
    let run = |ty, fields| layout.run(ty, fields);
    // `qstr`: the length in the high half of `hash_len` (little-endian), then the name.
    let qstr = [
        field("qstr", "hash_len")?,
        field("qstr", "len")?,
        field("qstr", "name")?,
    ];
    if qstr != [0, 4, 8] {
        return Err(OffsetsError::Unsupported {
            path: path.to_owned(),
            what: format!("qstr hash_len/len/name at {qstr:?}, the exec sensor reads [0, 4, 8]"),
        });
    }
    let d_parent = run("dentry", &["d_parent", "d_name"])?;
    Ok(KernelOffsets {
        task_real_parent: field("task_struct", "real_parent")?,
        task_tgid: field("task_struct", "tgid")?,
        task_comm: field("task_struct", "comm")?,
        task_mm: field("task_struct", "mm")?,
        task_signal: field("task_struct", "signal")?,
        mm_arg_start: run(
            "mm_struct",
            &["arg_start", "arg_end", "env_start", "env_end"],
        )?,
        signal_tty: field("signal_struct", "tty")?,
        tty_index: field("tty_struct", "index")?,
        tty_driver: field("tty_struct", "driver")?,
        driver_major: field("tty_driver", "major")?,
        driver_minor_start: field("tty_driver", "minor_start")?,
        binprm_filename: field("linux_binprm", "filename")?,
        binprm_file: field("linux_binprm", "file")?,
        binprm_interp: field("linux_binprm", "interp")?,
        task_thread_pid: field("task_struct", "thread_pid")?,
        task_cred: field("task_struct", "cred")?,
        // Absent without CONFIG_AUDIT: the login uid is then unknown, as in Falco.
        task_loginuid: layout
            .optional_field("task_struct", "loginuid")?
            .unwrap_or(0),
        signal_pgrp: field("signal_struct", "pids")? + pgid_index * pointer,
        pid_level: field("pid", "level")?,
        pid_numbers: field("pid", "numbers")?,
        upid_size: layout.size("upid")?,
        upid_nr: run("upid", &["nr", "ns"])?,
        cred_caps: run(
            "cred",
            &["cap_inheritable", "cap_permitted", "cap_effective"],
        )?,
        task_fs: field("task_struct", "fs")?,
        fs_root: field("fs_struct", "root")?,
        fs_pwd: field("fs_struct", "pwd")?,
        path_mnt: run("path", &["mnt", "dentry"])?,
        dentry_parent: d_parent,
        mount_mnt: field("mount", "mnt")?,
        mount_parent: field("mount", "mnt_parent")?,
        mount_mountpoint: field("mount", "mnt_mountpoint")?,
        vfsmount_root: field("vfsmount", "mnt_root")?,
        mm_exe_file: field("mm_struct", "exe_file")?,
        file_dentry: field("file", "f_path")? + field("path", "dentry")?,
        dentry_inode: field("dentry", "d_inode")?,
        dentry_sb: field("dentry", "d_sb")?,
        sb_magic: field("super_block", "s_magic")?,
        inode_ino: field("inode", "i_ino")?,
        ovl_upperdentry: ovl_upperdentry(&layout)?,
        ready: 1,
    })
}

/// From `&ovl_inode.vfs_inode` to `ovl_inode.__upperdentry`: from the kernel's BTF when
/// overlayfs is built in, else from the module's; with neither (the module not loaded yet),
/// the member right after `vfs_inode`, as Falco's driver assumes (true since Linux 4.13).
fn ovl_upperdentry(layout: &Layout<'_>) -> Result<u32, OffsetsError> {
    let module;
    let ovl = if field_offset(layout.btf, "ovl_inode", "vfs_inode").is_some() {
        Some(*layout)
    } else {
        let path = Path::new(OVERLAY_MODULE_BTF);
        module = Btf::from_split_file(path, layout.btf).ok();
        module.as_ref().map(|btf| Layout { btf, path })
    };
    match ovl {
        Some(ovl) => {
            Ok(ovl.field("ovl_inode", "__upperdentry")? - ovl.field("ovl_inode", "vfs_inode")?)
        }
        None => {
            tracing::debug!("overlayfs BTF not loaded; its inode layout is taken as Falco's");
            layout.size("inode")
        }
    }
}

/// Lookups in one BTF, with errors naming the file.
#[derive(Clone, Copy)]
struct Layout<'a> {
    btf: &'a Btf,
    path: &'a Path,
}

impl Layout<'_> {
    /// Byte offset of `field` in struct `ty`.
    fn field(&self, ty: &'static str, field: &'static str) -> Result<u32, OffsetsError> {
        self.optional_field(ty, field)?
            .ok_or_else(|| OffsetsError::MissingField {
                path: self.path.to_owned(),
                ty,
                field,
            })
    }

    fn optional_field(
        &self,
        ty: &'static str,
        field: &'static str,
    ) -> Result<Option<u32>, OffsetsError> {
        match field_offset(self.btf, ty, field) {
            Some(Ok(bits)) => Ok(Some(bits / 8)),
            Some(Err(())) => Err(OffsetsError::BitField {
                path: self.path.to_owned(),
                ty,
                field,
            }),
            None => Ok(None),
        }
    }

    /// The offset of the first of `fields`, which must follow each other 8 bytes apart (the
    /// exec program reads them as one array of u64).
    fn run(&self, ty: &'static str, fields: &[&'static str]) -> Result<u32, OffsetsError> {
        let first = self.field(ty, fields[0])?;
        for (i, name) in fields.iter().enumerate().skip(1) {
            let at = self.field(ty, name)?;
            if at != first + 8 * i as u32 {
                return Err(OffsetsError::Unsupported {
                    path: self.path.to_owned(),
                    what: format!(
                        "{ty}.{name} is at byte {at}, not 8 bytes after {ty}.{}",
                        fields[i - 1]
                    ),
                });
            }
        }
        Ok(first)
    }

    /// `sizeof(struct ty)`.
    fn size(&self, ty: &'static str) -> Result<u32, OffsetsError> {
        struct_type(self.btf, ty)
            .map(|s| s.size() as u32)
            .ok_or_else(|| OffsetsError::MissingType {
                path: self.path.to_owned(),
                ty,
            })
    }

    /// `sizeof(ty)` for a typedef of a struct (`kernel_cap_t`).
    fn typedef_size(&self, ty: &'static str) -> Result<u32, OffsetsError> {
        let types = self.btf.resolve_types_by_name(ty).unwrap_or_default();
        types
            .iter()
            .find_map(|t| match t {
                Type::Typedef(t) => match self.btf.resolve_chained_type(t).ok()? {
                    Type::Struct(s) => Some(s.size() as u32),
                    _ => None,
                },
                _ => None,
            })
            .ok_or_else(|| OffsetsError::MissingType {
                path: self.path.to_owned(),
                ty,
            })
    }

    /// The value of `member` in `enum ty`.
    fn enum_value(&self, ty: &'static str, member: &'static str) -> Result<u32, OffsetsError> {
        let types = self.btf.resolve_types_by_name(ty).unwrap_or_default();
        types
            .iter()
            .find_map(|t| match t {
                Type::Enum(e) => e
                    .members
                    .iter()
                    .find(|m| self.btf.resolve_name(*m).is_ok_and(|n| n == member))
                    .map(|m| m.val()),
                _ => None,
            })
            .ok_or_else(|| OffsetsError::MissingField {
                path: self.path.to_owned(),
                ty,
                field: member,
            })
    }
}

/// The struct named `ty` that has members (not a forward declaration).
fn struct_type(btf: &Btf, ty: &str) -> Option<btf_rs::Struct> {
    let types = btf.resolve_types_by_name(ty).ok()?;
    types.into_iter().find_map(|t| match t {
        Type::Struct(s) if !s.members.is_empty() => Some(s),
        _ => None,
    })
}

/// Bit offset of `field` in struct `ty`, looking through anonymous struct/union members
/// (`mm_struct` keeps its fields in one). `Some(Err(()))` for a bit-field.
fn field_offset(btf: &Btf, ty: &str, field: &str) -> Option<Result<u32, ()>> {
    // A name can also be a typedef or forward declaration; take the struct with members.
    member_offset(btf, &struct_type(btf, ty)?, field, 0)
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
        // Fields inside mm_struct's anonymous struct must be found, and in runs.
        assert!(off.mm_arg_start > 0 && off.cred_caps > 0, "{off:?}");
        assert!(
            off.task_real_parent > 0 && off.task_comm > off.task_tgid,
            "{off:?}"
        );
    }
}
