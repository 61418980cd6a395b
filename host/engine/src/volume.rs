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
    /// The same file opened a second time, read-ahead off, for the before-images: reads at
    /// scattered offsets, where read-ahead fills the page cache with pages nobody asks for.
    scattered: Arc<File>,
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
        let (existing, size) = Self::inspect(path, size)?;
        // Every check has passed: only now may the disk change.
        let file = match existing {
            Some((file, actual)) => {
                if actual < size {
                    file.set_len(size).map_err(io_err(path))?;
                }
                file
            }
            None => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(io_err(path))?;
                file.set_len(size).map_err(io_err(path))?;
                file
            }
        };
        let scattered = OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(io_err(path))?;
        // Advice only: where it is not taken, the reads are the same, with read-ahead.
        if let Err(e) = rustix::fs::fadvise(&scattered, 0, None, rustix::fs::Advice::Random) {
            tracing::debug!(path = %path.display(), "read-ahead stays on for before-images: {e}");
        }
        Ok(Volume {
            file: Arc::new(file),
            scattered: Arc::new(scattered),
            size,
            path: path.to_path_buf(),
        })
    }

    /// The size the volume has or would have, without creating or changing anything.
    pub fn probe_size(path: &Path, size: Option<u64>) -> Result<u64, VolumeError> {
        Self::inspect(path, size).map(|(_, s)| s)
    }

    /// Every check `open` makes, changing nothing: the existing file opened read-write (which proves
    /// we may write) with its current size, if there is one, and the size the volume will have.
    fn inspect(path: &Path, size: Option<u64>) -> Result<(Option<(File, u64)>, u64), VolumeError> {
        if let Some(s) = size {
            if s == 0 || s % 512 != 0 {
                return Err(VolumeError::BadSize(s));
            }
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Err(VolumeError::IsDirectory(path.to_path_buf())),
            Ok(m) => {
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
                let size = match size {
                    Some(wanted) if actual > wanted => {
                        return Err(VolumeError::WouldShrink {
                            path: path.to_path_buf(),
                            actual,
                            wanted,
                        })
                    }
                    Some(wanted) => wanted,
                    None if actual == 0 || actual % 512 != 0 => {
                        return Err(VolumeError::BadSize(actual))
                    }
                    None => actual,
                };
                Ok((Some((file, actual)), size))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(wanted) = size else {
                    return Err(VolumeError::Missing(path.to_path_buf()));
                };
                // It will be created: its folder must exist.
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let md = std::fs::metadata(dir).map_err(io_err(path))?;
                if !md.is_dir() {
                    return Err(io_err(path)(io::Error::other(format!(
                        "{} is not a directory",
                        dir.display()
                    ))));
                }
                Ok((None, wanted))
            }
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

    /// The `len` bytes at `offset`, read without read-ahead (for the before-image of a write,
    /// whose neighbours nobody is about to read) into memory that is not zeroed first.
    pub fn read_before(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            let at = offset + buf.len() as u64;
            match rustix::io::pread(
                &*self.scattered,
                rustix::buffer::spare_capacity(&mut buf),
                at,
            ) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(len);
        Ok(buf)
    }

    pub fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Makes the volume durable on a blocking thread and hands the outcome, as an errno, to
    /// `done`; the caller's task never waits on the disk.
    pub fn sync_in_background(&self, done: impl FnOnce(Result<(), i32>) + Send + 'static) {
        let v = self.clone();
        tokio::task::spawn_blocking(move || done(v.sync().map_err(|e| errno_of(&e))));
    }
}

/// The errno a failed volume operation reports through the protocol (EIO when the OS gave none).
pub fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(specmirror_core::errno::EIO)
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
    fn before_image_reads_see_every_write() {
        let d = tempfile::tempdir().unwrap();
        let v = Volume::open(&d.path().join("v"), Some(1 << 20)).unwrap();
        let hole = v.read_before(64 << 10, 4096).unwrap();
        assert_eq!(hole, [0u8; 4096], "a hole reads as zeros");
        v.write_at(64 << 10, &[7u8; 4096]).unwrap();
        v.write_at((64 << 10) + 4096, &[8u8; 10]).unwrap();
        let b = v.read_before(64 << 10, 4100).unwrap();
        assert_eq!(b.len(), 4100);
        assert_eq!(
            b[..4096],
            [7u8; 4096],
            "the write made through the other handle is seen"
        );
        assert_eq!(b[4096..], [8u8; 4]);
        assert!(v.read_before((1 << 20) - 10, 4096).is_err(), "past the end");
        assert!(v.read_before(0, 0).unwrap().is_empty());
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
