//! The node ban's program on interfaces: a TC classifier on ingress, as a TCX link (kernels
//! 6.6+, first in the chain, returning "next" so programs after it, a CNI's, still run) or a
//! clsact filter (older kernels); or an XDP program (the cheapest drop, but one per
//! interface). Only Ethernet interfaces: the program reads an Ethernet header.
//!
//! Attaching and looking interfaces up happen in the network namespace of the calling thread
//! (see [`crate::netban::netns`]). Dropping [`Programs`] detaches everything.

use std::{collections::BTreeMap, ffi::CString, io};

use aya::{
    Ebpf,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions, TcError},
        xdp::XdpLinkId,
    },
};
use serde::{Deserialize, Serialize};
use youwatch_common::netban::names;

use super::{KernelError, chain};

/// `node_ban.attach`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// TCX where the kernel has it (6.6+), else clsact.
    #[default]
    Auto,
    Tcx,
    Clsact,
    Xdp,
}

/// How the program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Tcx,
    Clsact,
    Xdp,
}

impl Attached {
    pub fn as_str(self) -> &'static str {
        match self {
            Attached::Tcx => "tcx",
            Attached::Clsact => "clsact",
            Attached::Xdp => "xdp",
        }
    }
}

enum Link {
    Tc(SchedClassifierLinkId, Attached),
    Xdp(XdpLinkId),
}

/// `ARPHRD_ETHER`.
const ARPHRD_ETHER: u16 = 1;
/// clsact filter priority: before filters added with the default priority.
const CLSACT_PRIORITY: u16 = 1;

/// The loaded program and where it is attached.
pub struct Programs {
    ebpf: Ebpf,
    xdp: bool,
    links: BTreeMap<String, Link>,
}

impl Programs {
    pub(super) fn load(mut ebpf: Ebpf, xdp: bool) -> Result<Programs, KernelError> {
        let load = |e: aya::programs::ProgramError| KernelError::Load(chain(e));
        if xdp {
            let program: &mut Xdp = program(&mut ebpf, names::XDP_PROGRAM)?
                .try_into()
                .map_err(load)?;
            program.load().map_err(load)?;
        } else {
            let program: &mut SchedClassifier = program(&mut ebpf, names::TC_PROGRAM)?
                .try_into()
                .map_err(load)?;
            program.load().map_err(load)?;
        }
        Ok(Programs {
            ebpf,
            xdp,
            links: BTreeMap::new(),
        })
    }

    /// Attaches to `interface` (on the calling thread's network namespace).
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<Attached, KernelError> {
        let bad = |message: String| KernelError::Interface {
            interface: interface.to_owned(),
            message,
        };
        if self.links.contains_key(interface) {
            return Err(bad("already attached".into()));
        }
        match link_type(interface) {
            Ok(ARPHRD_ETHER) => {}
            Ok(other) => {
                return Err(bad(format!(
                    "link type {other} (see /usr/include/linux/if_arp.h) is not Ethernet; the \
                     node ban reads Ethernet frames: name the node's Ethernet interface (or its \
                     bond or VLAN)"
                )));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                return Err(bad(
                    "no such interface in the agent's network namespace (run the agent with \
                     hostNetwork: true, or set node_ban.netns)"
                        .into(),
                ));
            }
            Err(e) => return Err(bad(format!("cannot read its link type: {e}"))),
        }
        if (mode == AttachMode::Xdp) != self.xdp {
            return Err(bad(format!(
                "the {} program was loaded, not the one for attach mode {mode:?}",
                if self.xdp { "XDP" } else { "TC" }
            )));
        }
        let link = match mode {
            AttachMode::Xdp => {
                let program: &mut Xdp = self.program(names::XDP_PROGRAM)?;
                let id = program
                    .attach(interface, XdpMode::default())
                    .map_err(|e| bad(format!("attaching the XDP program: {}", chain(e))))?;
                Link::Xdp(id)
            }
            AttachMode::Tcx => self.attach_tcx(interface).map_err(bad)?,
            AttachMode::Clsact => self.attach_clsact(interface).map_err(bad)?,
            AttachMode::Auto => match self.attach_tcx(interface) {
                Ok(link) => link,
                Err(tcx) => {
                    tracing::info!(
                        interface,
                        error = tcx,
                        "TCX unavailable; attaching as a clsact filter"
                    );
                    self.attach_clsact(interface).map_err(bad)?
                }
            },
        };
        let attached = match &link {
            Link::Tc(_, how) => *how,
            Link::Xdp(_) => Attached::Xdp,
        };
        self.links.insert(interface.to_owned(), link);
        Ok(attached)
    }

    fn attach_tcx(&mut self, interface: &str) -> Result<Link, String> {
        let options = TcAttachOptions::TcxOrder(LinkOrder::first());
        let id = self.attach_tc(interface, options, "the TCX link")?;
        Ok(Link::Tc(id, Attached::Tcx))
    }

    fn attach_clsact(&mut self, interface: &str) -> Result<Link, String> {
        match tc::qdisc_add_clsact(interface) {
            Ok(()) => {}
            Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(format!("adding the clsact qdisc: {}", chain(e))),
        }
        let options = TcAttachOptions::Netlink(NlOptions {
            priority: CLSACT_PRIORITY,
            ..NlOptions::default()
        });
        let id = self.attach_tc(interface, options, "the clsact filter")?;
        Ok(Link::Tc(id, Attached::Clsact))
    }

    /// Attaches the TC program to `interface`'s ingress; `what` names the link in errors.
    fn attach_tc(
        &mut self,
        interface: &str,
        options: TcAttachOptions,
        what: &str,
    ) -> Result<SchedClassifierLinkId, String> {
        let program: &mut SchedClassifier =
            self.program(names::TC_PROGRAM).map_err(|e| e.to_string())?;
        program
            .attach_with_options(interface, TcAttachType::Ingress, options)
            .map_err(|e| format!("attaching {what}: {}", chain(e)))
    }

    /// Detaches from `interface`; not attached is fine. (A clsact qdisc the agent added stays:
    /// removing it would remove other tools' filters too.)
    pub fn detach(&mut self, interface: &str) -> Result<(), KernelError> {
        let Some(link) = self.links.remove(interface) else {
            return Ok(());
        };
        let result = match link {
            Link::Tc(id, _) => self
                .program::<SchedClassifier>(names::TC_PROGRAM)?
                .detach(id),
            Link::Xdp(id) => self.program::<Xdp>(names::XDP_PROGRAM)?.detach(id),
        };
        result.map_err(|e| KernelError::Interface {
            interface: interface.to_owned(),
            message: format!("detaching: {}", chain(e)),
        })
    }

    /// Detaches from every interface, logging what fails.
    pub fn detach_all(&mut self) {
        let interfaces: Vec<String> = self.links.keys().cloned().collect();
        for interface in interfaces {
            if let Err(e) = self.detach(&interface) {
                tracing::warn!(error = %e, "node ban not detached cleanly");
            }
        }
    }

    /// The interfaces attached to, and how.
    pub fn attached(&self) -> Vec<(String, Attached)> {
        self.links
            .iter()
            .map(|(name, link)| {
                let how = match link {
                    Link::Tc(_, how) => *how,
                    Link::Xdp(_) => Attached::Xdp,
                };
                (name.clone(), how)
            })
            .collect()
    }

    /// The loaded program's kernel id (for `bpftool`, run-time statistics).
    pub fn program_id(&self) -> Option<u32> {
        let name = if self.xdp {
            names::XDP_PROGRAM
        } else {
            names::TC_PROGRAM
        };
        self.ebpf.program(name)?.info().ok().map(|i| i.id())
    }

    /// The loaded program, for `BPF_PROG_TEST_RUN` (benchmarks).
    pub fn test_runner(&mut self) -> Option<&mut aya::programs::Program> {
        let name = if self.xdp {
            names::XDP_PROGRAM
        } else {
            names::TC_PROGRAM
        };
        self.ebpf.program_mut(name)
    }

    fn program<'a, P>(&'a mut self, name: &'static str) -> Result<&'a mut P, KernelError>
    where
        &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        program(&mut self.ebpf, name)?
            .try_into()
            .map_err(|e| KernelError::Load(chain(e)))
    }
}

impl Drop for Programs {
    fn drop(&mut self) {
        self.detach_all();
    }
}

fn program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::programs::Program, KernelError> {
    ebpf.program_mut(name)
        .ok_or_else(|| KernelError::Load(format!("program {name} missing from the object")))
}

/// The interface's ARP hardware type (`ARPHRD_*`), in the calling thread's namespace.
pub fn link_type(interface: &str) -> io::Result<u16> {
    let name =
        CString::new(interface).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if name.as_bytes().len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    // SAFETY: a datagram socket only to ask about the interface; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a zeroed ifreq with the name copied in (shorter than IFNAMSIZ, checked).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr of a valid ifreq.
    let result = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    let error = io::Error::last_os_error();
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    if result != 0 {
        return Err(error);
    }
    // SAFETY: filled by the ioctl above.
    Ok(unsafe { req.ifr_ifru.ifru_hwaddr.sa_family })
}
