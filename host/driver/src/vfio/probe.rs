//! `specmirror probe`: everything the driver can learn about a device without running it, step by
//! step, each step passed or failed with the reason. Stops at the first step the rest depend on.

use std::fmt;

use specmirror_abi::regs;

use super::pci::{Bar, VfioPci};
use super::sysfs::{PciAddress, Sysfs};

/// One line of the report.
pub struct Step {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

pub struct ProbeReport {
    pub addr: PciAddress,
    pub steps: Vec<Step>,
    /// A specmirror register block of a version this driver speaks was found.
    pub specmirror: bool,
}

impl ProbeReport {
    /// Every step passed and the device is a specmirror device.
    pub fn passed(&self) -> bool {
        self.specmirror && self.steps.iter().all(|s| s.ok)
    }

    fn step(&mut self, name: &'static str, r: Result<String, String>) -> bool {
        let ok = r.is_ok();
        let detail = r.unwrap_or_else(|e| e);
        self.steps.push(Step { name, ok, detail });
        ok
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "device {}", self.addr)?;
        for s in &self.steps {
            let mark = if s.ok { "ok  " } else { "FAIL" };
            let mut lines = s.detail.lines();
            writeln!(f, "  {mark} {:<10} {}", s.name, lines.next().unwrap_or(""))?;
            for l in lines {
                writeln!(f, "       {:<10} {l}", "")?;
            }
        }
        let verdict = if self.passed() {
            "a specmirror device, ready"
        } else if self.specmirror {
            "a specmirror device, but a check failed"
        } else {
            "not usable as a specmirror device"
        };
        write!(f, "result: {verdict}")
    }
}

/// Walks the chain of register blocks in BAR0 (id, version, next-block offset), as long as the
/// ids are known and the offsets move forward inside the BAR.
pub fn walk_blocks(bar: &Bar) -> (Vec<String>, bool) {
    walk(|at| bar.read32(at), bar.len())
}

/// `walk_blocks` over any 32-bit register reader of a BAR `len` bytes long.
fn walk(read32: impl Fn(usize) -> u32, len: usize) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let mut found = false;
    let mut at = 0usize;
    for _ in 0..16 {
        let id = read32(at + regs::BLOCK_ID as usize);
        let version = read32(at + regs::BLOCK_VERSION as usize);
        if id != regs::BLOCK_ID_MIRROR {
            out.push(format!(
                "at {at:#x}: unknown block id {id:#010x} (a specmirror block is {:#010x})",
                regs::BLOCK_ID_MIRROR
            ));
            break;
        }
        let speaks = version >> 16 == regs::BLOCK_VERSION_MIRROR >> 16;
        found |= speaks;
        out.push(format!(
            "at {at:#x}: specmirror mirror engine v{}.{}{}, capabilities {:#x}, {} lock-table \
             entries",
            version >> 16,
            version & 0xffff,
            if speaks {
                ""
            } else {
                " (this driver speaks another major version)"
            },
            read32(at + regs::CAPABILITIES as usize),
            read32(at + regs::LOCK_TABLE_ENTRIES as usize),
        ));
        let next = read32(at + regs::NEXT_BLOCK as usize) as usize;
        if next == 0 || next <= at || next + regs::BAR0_LEN as usize > len {
            break;
        }
        at = next;
    }
    (out, found)
}

pub fn probe(sysfs: &Sysfs, addr: PciAddress) -> ProbeReport {
    let mut r = ProbeReport {
        addr,
        steps: Vec::new(),
        specmirror: false,
    };
    let info = match sysfs.preflight(addr) {
        Ok(info) => info,
        Err(e) => {
            r.step("kernel", Err(e.to_string()));
            return r;
        }
    };
    let members = info
        .group_members
        .iter()
        .map(|(a, d)| format!("{a} ({})", d.as_deref().unwrap_or("no driver")))
        .collect::<Vec<_>>()
        .join(", ");
    r.step(
        "kernel",
        Ok(format!(
            "vendor {:04x} device {:04x}, driver vfio-pci\nIOMMU group {} ({}): {members}",
            info.vendor,
            info.device,
            info.group,
            info.group_node.display()
        )),
    );
    let pci = match VfioPci::open(sysfs, addr) {
        Ok(p) => p,
        Err(e) => {
            r.step("open", Err(e.to_string()));
            return r;
        }
    };
    r.step("open", Ok("VFIO container and IOMMU group attached".into()));
    let bars = pci
        .bars()
        .iter()
        .filter(|b| b.size > 0)
        .map(|b| {
            format!(
                "BAR{}: {} bytes{}",
                b.index,
                b.size,
                if b.mappable { ", mmap" } else { "" }
            )
        })
        .collect::<Vec<_>>();
    r.step(
        "bars",
        if bars.is_empty() {
            Err("the device implements no BAR".into())
        } else {
            Ok(bars.join("\n"))
        },
    );
    match pci.map_bar(0) {
        Ok(bar) if (bar.len() as u64) < regs::BAR0_LEN => {
            r.step(
                "registers",
                Err(format!(
                    "BAR0 is {} bytes, a specmirror register block {}",
                    bar.len(),
                    regs::BAR0_LEN
                )),
            );
        }
        Ok(bar) => {
            let (lines, found) = walk_blocks(&bar);
            r.specmirror = found;
            let text = lines.join("\n");
            r.step("registers", if found { Ok(text) } else { Err(text) });
        }
        Err(e) => {
            r.step("registers", Err(e.to_string()));
        }
    }
    let dma = pci
        .enable_bus_master()
        .map_err(|e| e.to_string())
        .and_then(|_| {
            let mem = pci.alloc_dma(64 * 1024).map_err(|e| e.to_string())?;
            Ok(format!(
                "bus master on; 64 KiB mapped through the IOMMU at bus address {:#x} and unmapped",
                mem.bus_addr()
            ))
        });
    r.step("dma", dma);
    let (msi, msix) = pci.vectors();
    let irq = if msix > 0 {
        pci.enable_msix(1).map(|_| "MSI-X")
    } else {
        pci.enable_msi(1).map(|_| "MSI")
    };
    let irq = irq.map_err(|e| e.to_string()).map(|kind| {
        pci.disable_interrupts();
        format!("{msi} MSI, {msix} MSI-X vector(s); one {kind} vector routed to an eventfd and released")
    });
    r.step("interrupts", irq);
    let reset = pci
        .reset()
        .map(|_| format!("reset by the kernel ({})", pci.reset_methods()))
        .map_err(|e| e.to_string());
    r.step("reset", reset);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn bar(words: &[(usize, u32)]) -> impl Fn(usize) -> u32 {
        let m: HashMap<usize, u32> = words.iter().copied().collect();
        move |at| m.get(&at).copied().unwrap_or(0)
    }

    #[test]
    fn the_block_chain_is_followed_and_foreign_blocks_stop_it() {
        let b = regs::BAR0_LEN as usize;
        let read = bar(&[
            (regs::BLOCK_ID as usize, regs::BLOCK_ID_MIRROR),
            (regs::BLOCK_VERSION as usize, regs::BLOCK_VERSION_MIRROR),
            (regs::NEXT_BLOCK as usize, b as u32),
            (b, 0x0100_00ed),
        ]);
        let (lines, found) = walk(&read, 4 * b);
        assert!(found);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("at 0x0: specmirror mirror engine v1.0"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("unknown block id 0x010000ed"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_loop_or_an_offset_past_the_bar_ends_the_walk() {
        let looped = bar(&[
            (regs::BLOCK_ID as usize, regs::BLOCK_ID_MIRROR),
            (regs::BLOCK_VERSION as usize, regs::BLOCK_VERSION_MIRROR),
            (regs::NEXT_BLOCK as usize, 0),
        ]);
        assert_eq!(walk(&looped, 1 << 20).0.len(), 1);
        let past = bar(&[
            (regs::BLOCK_ID as usize, regs::BLOCK_ID_MIRROR),
            (regs::BLOCK_VERSION as usize, regs::BLOCK_VERSION_MIRROR),
            (regs::NEXT_BLOCK as usize, 1 << 20),
        ]);
        assert_eq!(walk(&past, 1 << 20).0.len(), 1);
    }

    #[test]
    fn another_major_version_is_listed_but_not_usable() {
        let read = bar(&[
            (regs::BLOCK_ID as usize, regs::BLOCK_ID_MIRROR),
            (regs::BLOCK_VERSION as usize, 2 << 16),
        ]);
        let (lines, found) = walk(&read, regs::BAR0_LEN as usize);
        assert!(!found);
        assert!(
            lines[0].contains("v2.0 (this driver speaks another major version)"),
            "{lines:?}"
        );
    }
}
