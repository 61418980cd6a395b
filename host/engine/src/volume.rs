//! A volume: a regular file (or block device) accessed with positional I/O.
//!
//! Opening validates everything first and changes nothing on disk until every check has passed,
//! so a refused start leaves the file as it was.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {0} is a directory")]
    IsDirectory(PathBuf),
    #[error("volume {0} does not exist; pass --size to create it")]
    Missing(PathBuf),
    #[error("volume {path} is {actual} bytes, larger than --size {wanted}: refusing to shrink it")]
    WouldShrink {
        path: PathBuf,
        actual: u64,
        wanted: u64,
    },
    #[error("volume size {0} is not a positive multiple of 512 bytes")]
    BadSize(u64),
    #[error("volume {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// An open volume; cheap to clone.
#[derive(Clone, Debug)]
pub struct Volume {
    file: Arc<File>,
    size: u64,
    path: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Volume {
    /// Opens `path` read-write. With `size`, a missing file is created and a smaller one extended;
    /// without it the file must exist and is used as it is.
    pub fn open(path: &Path, size: Option<u64>) -> Result<Volume, VolumeError> {
        if let Some(s) = size {
            if s == 0 || s % 512 != 0 {
                return Err(VolumeError::BadSize(s));
            }
        }
        let meta = match std::fs::metadata(path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(path)(e)),
        };
        let (file, actual) = match meta {
            Some(m) if m.is_dir() => return Err(VolumeError::IsDirectory(path.to_path_buf())),
            Some(m) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                let actual = if m.file_type().is_block_device() {
                    use std::io::Seek;
                    (&file).seek(io::SeekFrom::End(0)).map_err(io_err(path))?
                } else {
                    m.len()
                };
                (file, actual)
            }
            None => {
                if size.is_none() {
                    return Err(VolumeError::Missing(path.to_path_buf()));
                }
                // Fails here, before anything is created, if the folder is missing or read-only.
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(io_err(path))?;
                (file, 0)
            }
        };
        let size = match size {
            Some(wanted) if actual > wanted => {
                return Err(VolumeError::WouldShrink {
                    path: path.to_path_buf(),
                    actual,
                    wanted,
                })
            }
            Some(wanted) => {
                if actual < wanted {
                    file.set_len(wanted).map_err(io_err(path))?;
                }
                wanted
            }
            None => {
                if actual == 0 || actual % 512 != 0 {
                    return Err(VolumeError::BadSize(actual));
                }
                actual
            }
        };
        Ok(Volume {
            file: Arc::new(file),
            size,
            path: path.to_path_buf(),
        })
    }

    /// The size the volume has or would have, without opening it for writing or creating it.
    pub fn probe_size(path: &Path, size: Option<u64>) -> Result<u64, VolumeError> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Err(VolumeError::IsDirectory(path.to_path_buf())),
            Ok(m) => {
                // Opening read-write proves we may write before we promise anything.
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                let actual = if m.file_type().is_block_device() {
                    use std::io::Seek;
                    (&f).seek(io::SeekFrom::End(0)).map_err(io_err(path))?
                } else {
                    m.len()
                };
                match size {
                    Some(w) if actual > w => Err(VolumeError::WouldShrink {
                        path: path.to_path_buf(),
                        actual,
                        wanted: w,
                    }),
                    Some(w) if w == 0 || w % 512 != 0 => Err(VolumeError::BadSize(w)),
                    Some(w) => Ok(w),
                    None if actual == 0 || actual % 512 != 0 => Err(VolumeError::BadSize(actual)),
                    None => Ok(actual),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match size {
                None => Err(VolumeError::Missing(path.to_path_buf())),
                Some(w) if w == 0 || w % 512 != 0 => Err(VolumeError::BadSize(w)),
                Some(w) => {
                    let dir = path
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .unwrap_or(Path::new("."));
                    let md = std::fs::metadata(dir).map_err(io_err(dir))?;
                    if !md.is_dir() {
                        return Err(io_err(dir)(io::Error::other("not a directory")));
                    }
                    Ok(w)
                }
            },
            Err(e) => Err(io_err(path)(e)),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    pub fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_extends_and_refuses_to_shrink() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v");
        assert!(matches!(
            Volume::open(&p, None),
            Err(VolumeError::Missing(_))
        ));
        assert!(!p.exists(), "a refused open creates nothing");
        let v = Volume::open(&p, Some(4096)).unwrap();
        assert_eq!(v.size(), 4096);
        v.write_at(10, b"abc").unwrap();
        drop(v);
        let v = Volume::open(&p, Some(8192)).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 8192);
        let mut b = [0u8; 3];
        v.read_at(10, &mut b).unwrap();
        assert_eq!(&b, b"abc");
        assert!(matches!(
            Volume::open(&p, Some(4096)),
            Err(VolumeError::WouldShrink { .. })
        ));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 8192);
        assert_eq!(Volume::open(&p, None).unwrap().size(), 8192);
    }

    #[test]
    fn refuses_directories_and_odd_sizes() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            Volume::open(d.path(), Some(4096)),
            Err(VolumeError::IsDirectory(_))
        ));
        assert!(matches!(
            Volume::open(&d.path().join("x"), Some(1000)),
            Err(VolumeError::BadSize(1000))
        ));
        assert!(!d.path().join("x").exists());
        std::fs::write(d.path().join("odd"), [0u8; 1000]).unwrap();
        assert!(matches!(
            Volume::open(&d.path().join("odd"), None),
            Err(VolumeError::BadSize(1000))
        ));
        assert!(Volume::open(&d.path().join("no/such/dir/v"), Some(4096)).is_err());
    }

    #[test]
    fn probe_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v");
        assert_eq!(Volume::probe_size(&p, Some(8192)).unwrap(), 8192);
        assert!(!p.exists());
        assert!(Volume::probe_size(&d.path().join("none/v"), Some(8192)).is_err());
    }
}
