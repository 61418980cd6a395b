//! What the kernel says about a PCI device before VFIO opens it: its driver, its IOMMU group and
//! whether that group is viable, and whether this process may open the group's node. Each problem
//! becomes an error that tells the operator what to run. The root directory is a parameter so the
//! checks are tested against a made-up sysfs tree.

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A PCI address, `DDDD:BB:DD.F` (the domain may be left out: `BB:DD.F`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad PCI address {0:?}: expected DDDD:BB:DD.F, for example 0000:01:00.0")]
pub struct BadPciAddress(pub String);

impl FromStr for PciAddress {
    type Err = BadPciAddress;
    fn from_str(s: &str) -> Result<PciAddress, BadPciAddress> {
        let bad = || BadPciAddress(s.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        let (domain, bus, devfn) = match parts[..] {
            [d, b, df] => (d, b, df),
            [b, df] => ("0", b, df),
            _ => return Err(bad()),
        };
        let (dev, func) = devfn.split_once('.').ok_or_else(bad)?;
        let hex = |t: &str, max: u32| {
            (!t.is_empty() && t.len() <= 4)
                .then(|| u32::from_str_radix(t, 16).ok())
                .flatten()
                .filter(|v| *v <= max)
                .ok_or_else(bad)
        };
        Ok(PciAddress {
            domain: hex(domain, 0xffff)? as u16,
            bus: hex(bus, 0xff)? as u8,
            device: hex(dev, 0x1f)? as u8,
            function: hex(func, 7)? as u8,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// Drivers that leave a group viable: VFIO's own, and those that never do DMA for the device.
const VIABLE_DRIVERS: &[&str] = &["vfio-pci", "pci-stub", "pcieport"];

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("no PCI device {addr} (nothing at {path}); `lspci -D` lists the devices")]
    NoSuchDevice { addr: PciAddress, path: PathBuf },
    #[error(
        "{addr} has no IOMMU group: the kernel runs without an IOMMU, and VFIO needs one. Enable \
         VT-d/AMD-Vi in the firmware and boot with intel_iommu=on (or amd_iommu=on); \
         /sys/kernel/iommu_groups must not be empty"
    )]
    NoIommu { addr: PciAddress },
    #[error("{addr} is bound to {}, not vfio-pci; bind it with:\n{commands}",
        driver.as_deref().unwrap_or("no driver"))]
    NotBound {
        addr: PciAddress,
        driver: Option<String>,
        commands: String,
    },
    #[error(
        "IOMMU group {group} of {addr} is not viable: {} still bound to other drivers; every \
         device in the group must be unbound or bound to vfio-pci:\n{commands}",
        others.iter().map(|(a, d)| format!("{a} ({d})")).collect::<Vec<_>>().join(", ")
    )]
    GroupNotViable {
        addr: PciAddress,
        group: u32,
        others: Vec<(PciAddress, String)>,
        commands: String,
    },
    #[error(
        "{path} does not exist although {addr} is bound to vfio-pci: is devtmpfs mounted on /dev?"
    )]
    NoGroupNode { addr: PciAddress, path: PathBuf },
    #[error(
        "no permission to open {path}: run as root, or give this user the node \
         (chown USER {path}) and a memory-lock limit large enough for the rings (ulimit -l)"
    )]
    NoPermission { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the preflight learned about a device.
#[derive(Clone, Debug)]
pub struct PciInfo {
    pub addr: PciAddress,
    pub vendor: u16,
    pub device: u16,
    pub driver: Option<String>,
    pub group: u32,
    /// Every device of the IOMMU group (this one included) and its driver.
    pub group_members: Vec<(PciAddress, Option<String>)>,
    /// The sysfs directory VFIO opens the device by.
    pub sysfs_path: PathBuf,
    /// `/dev/vfio/N`.
    pub group_node: PathBuf,
}

/// The part of the file system the checks read: `/` on a real machine.
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Sysfs {
        Sysfs::at("/")
    }
}

impl Sysfs {
    pub fn at(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    pub fn device_dir(&self, addr: PciAddress) -> PathBuf {
        self.root.join(format!("sys/bus/pci/devices/{addr}"))
    }

    fn driver_of(&self, dir: &Path) -> Option<String> {
        let link = fs::read_link(dir.join("driver")).ok()?;
        Some(link.file_name()?.to_string_lossy().into_owned())
    }

    fn read_hex(&self, path: &Path) -> Result<u16, PreflightError> {
        let text = fs::read_to_string(path).map_err(|source| PreflightError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let t = text.trim().trim_start_matches("0x");
        u16::from_str_radix(t, 16).map_err(|_| PreflightError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(ErrorKind::InvalidData, format!("not hex: {text:?}")),
        })
    }

    /// The commands that hand `addr` to vfio-pci, given its current driver.
    pub fn bind_commands(&self, addr: PciAddress, driver: Option<&str>) -> String {
        let mut c = String::new();
        if !self.root.join("sys/bus/pci/drivers/vfio-pci").exists() {
            c += "  modprobe vfio-pci\n";
        }
        if driver.is_some() {
            c += &format!("  echo {addr} > /sys/bus/pci/devices/{addr}/driver/unbind\n");
        }
        c += &format!("  echo vfio-pci > /sys/bus/pci/devices/{addr}/driver_override\n");
        c += &format!("  echo {addr} > /sys/bus/pci/drivers_probe");
        c
    }

    /// Reads everything about `addr` and checks, in the order an operator fixes them: the device
    /// exists, an IOMMU is on, it is bound to vfio-pci, its group is viable, the group node opens.
    pub fn preflight(&self, addr: PciAddress) -> Result<PciInfo, PreflightError> {
        let dir = self.device_dir(addr);
        if !dir.exists() {
            return Err(PreflightError::NoSuchDevice { addr, path: dir });
        }
        let vendor = self.read_hex(&dir.join("vendor"))?;
        let device = self.read_hex(&dir.join("device"))?;
        let group = fs::read_link(dir.join("iommu_group"))
            .ok()
            .and_then(|l| l.file_name()?.to_str()?.parse::<u32>().ok())
            .ok_or(PreflightError::NoIommu { addr })?;
        let driver = self.driver_of(&dir);
        if driver.as_deref() != Some("vfio-pci") {
            return Err(PreflightError::NotBound {
                addr,
                commands: self.bind_commands(addr, driver.as_deref()),
                driver,
            });
        }
        let gdir = self
            .root
            .join(format!("sys/kernel/iommu_groups/{group}/devices"));
        let mut group_members = Vec::new();
        let entries = fs::read_dir(&gdir).map_err(|source| PreflightError::Io {
            path: gdir.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let Ok(a) = e.file_name().to_string_lossy().parse::<PciAddress>() else {
                continue;
            };
            group_members.push((a, self.driver_of(&self.device_dir(a))));
        }
        group_members.sort_by_key(|(a, _)| (a.domain, a.bus, a.device, a.function));
        let others: Vec<(PciAddress, String)> = group_members
            .iter()
            .filter_map(|(a, d)| {
                let d = d.as_deref()?;
                (!VIABLE_DRIVERS.contains(&d)).then(|| (*a, d.to_string()))
            })
            .collect();
        if !others.is_empty() {
            let commands = others
                .iter()
                .map(|(a, _)| format!("  echo {a} > /sys/bus/pci/devices/{a}/driver/unbind"))
                .collect::<Vec<_>>()
                .join("\n");
            return Err(PreflightError::GroupNotViable {
                addr,
                group,
                others,
                commands,
            });
        }
        let group_node = self.root.join(format!("dev/vfio/{group}"));
        for node in [self.root.join("dev/vfio/vfio"), group_node.clone()] {
            match fs::OpenOptions::new().read(true).write(true).open(&node) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    return Err(PreflightError::NoPermission { path: node })
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(PreflightError::NoGroupNode { addr, path: node })
                }
                // Busy (another process holds the group) and the like: VFIO's open says more.
                Err(_) => {}
            }
        }
        Ok(PciInfo {
            addr,
            vendor,
            device,
            driver,
            group,
            group_members,
            sysfs_path: dir,
            group_node,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn addr(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    /// A sysfs tree with one device, optionally bound and grouped.
    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Tree {
            let dir = tempfile::tempdir().unwrap();
            for d in ["sys/bus/pci/devices", "sys/bus/pci/drivers", "dev/vfio"] {
                fs::create_dir_all(dir.path().join(d)).unwrap();
            }
            Tree { dir }
        }
        fn p(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }
        fn device(&self, a: &str, driver: Option<&str>, group: Option<u32>) {
            let d = self.p(&format!("sys/bus/pci/devices/{a}"));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("vendor"), "0x1234\n").unwrap();
            fs::write(d.join("device"), "0x11e8\n").unwrap();
            if let Some(drv) = driver {
                let dd = self.p(&format!("sys/bus/pci/drivers/{drv}"));
                fs::create_dir_all(&dd).unwrap();
                symlink(&dd, d.join("driver")).unwrap();
            }
            if let Some(g) = group {
                let gd = self.p(&format!("sys/kernel/iommu_groups/{g}"));
                fs::create_dir_all(gd.join("devices")).unwrap();
                symlink(&gd, d.join("iommu_group")).unwrap();
                symlink(&d, gd.join(format!("devices/{a}"))).unwrap();
                fs::write(self.p(&format!("dev/vfio/{g}")), "").unwrap();
                fs::write(self.p("dev/vfio/vfio"), "").unwrap();
            }
        }
        fn sysfs(&self) -> Sysfs {
            Sysfs::at(self.dir.path())
        }
    }

    #[test]
    fn pci_addresses_parse_and_print() {
        assert_eq!(addr("0000:01:00.0").to_string(), "0000:01:00.0");
        assert_eq!(addr("3:1f.7").to_string(), "0000:03:1f.7");
        assert_eq!(addr("abcd:ff:02.1").domain, 0xabcd);
        for bad in [
            "",
            "01:00",
            "0000:01:20.0",
            "0000:01:00.8",
            "x:01:00.0",
            "1:2:3:4.0",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_missing_device_is_named() {
        let t = Tree::new();
        let e = t.sysfs().preflight(addr("0000:00:04.0")).unwrap_err();
        assert!(matches!(e, PreflightError::NoSuchDevice { .. }), "{e}");
    }

    #[test]
    fn no_iommu_group_means_no_iommu() {
        let t = Tree::new();
        t.device("0000:00:04.0", None, None);
        let e = t.sysfs().preflight(addr("0000:00:04.0")).unwrap_err();
        assert!(matches!(e, PreflightError::NoIommu { .. }));
        assert!(e.to_string().contains("intel_iommu=on"), "{e}");
    }

    #[test]
    fn an_unbound_device_gets_the_bind_commands() {
        let t = Tree::new();
        t.device("0000:00:04.0", Some("ixgbe"), Some(7));
        let e = t.sysfs().preflight(addr("0000:00:04.0")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("bound to ixgbe"), "{text}");
        assert!(text.contains("modprobe vfio-pci"), "{text}");
        assert!(
            text.contains("echo 0000:00:04.0 > /sys/bus/pci/devices/0000:00:04.0/driver/unbind"),
            "{text}"
        );
        assert!(text.contains("driver_override"), "{text}");
        // Without a driver there is nothing to unbind.
        let t = Tree::new();
        t.device("0000:00:04.0", None, Some(7));
        let text = t
            .sysfs()
            .preflight(addr("0000:00:04.0"))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("no driver") && !text.contains("unbind"),
            "{text}"
        );
    }

    #[test]
    fn a_group_with_a_foreign_driver_is_not_viable() {
        let t = Tree::new();
        t.device("0000:01:01.0", Some("vfio-pci"), Some(3));
        t.device("0000:01:02.0", Some("virtio-pci"), None);
        t.device("0000:01:03.0", None, None);
        let g = t.p("sys/kernel/iommu_groups/3/devices");
        for a in ["0000:01:02.0", "0000:01:03.0"] {
            symlink(t.p(&format!("sys/bus/pci/devices/{a}")), g.join(a)).unwrap();
        }
        let e = t.sysfs().preflight(addr("0000:01:01.0")).unwrap_err();
        match &e {
            PreflightError::GroupNotViable { group, others, .. } => {
                assert_eq!(*group, 3);
                assert_eq!(others, &vec![(addr("0000:01:02.0"), "virtio-pci".into())]);
            }
            other => panic!("{other}"),
        }
        assert!(e.to_string().contains("0000:01:02.0/driver/unbind"), "{e}");
    }

    #[test]
    fn a_bound_device_in_a_viable_group_passes() {
        let t = Tree::new();
        t.device("0000:00:04.0", Some("vfio-pci"), Some(5));
        let info = t.sysfs().preflight(addr("0000:00:04.0")).unwrap();
        assert_eq!((info.vendor, info.device, info.group), (0x1234, 0x11e8, 5));
        assert_eq!(info.group_members.len(), 1);
        assert!(info.group_node.ends_with("dev/vfio/5"));
        // The node gone: devtmpfs is the likely cause.
        fs::remove_file(t.p("dev/vfio/5")).unwrap();
        let e = t.sysfs().preflight(addr("0000:00:04.0")).unwrap_err();
        assert!(matches!(e, PreflightError::NoGroupNode { .. }), "{e}");
    }
}
