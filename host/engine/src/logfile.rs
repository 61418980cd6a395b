//! The rollback log on disk: an append-only file of CRC32C-protected records, replayed at start.
//!
//! The header names the volume pair the log belongs to; a log of another pair is refused. Every
//! change the source core makes to its rollback log becomes one record, appended before the action
//! that depends on it is carried out. A crash can leave a torn last record: replay stops at the
//! first record that does not check out, says so, and cuts the file there. When the log empties,
//! the file is cut back to its header; when it is mostly dead records, it is rewritten.
//!
//! A client write's record holds its before-image, not its data: the data goes to the volume right
//! after the record reaches the file, and replay reads it back from there
//! ([`Replayed::read_data`]). Whatever the volume holds over a logged write after a crash (its
//! data, a later write's, or what lay there before, if the crash came first) is what the target
//! is sent again, so the two copies agree; none of it was acknowledged until the target confirmed
//! it. A compensation record (content restored by a rollback) keeps its data.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use specmirror_core::rollback_log::LogRecord;

const MAGIC: &[u8; 8] = b"SMLOG001";
const HEADER_LEN: u64 = 64;
/// The file is cut back only once larger than this: started over when nothing in it is live,
/// rewritten with its live records when they are under a quarter of it.
const COMPACT_MIN: u64 = 64 << 20;

const PUT: u8 = 1;
const LOCK_GRANTED: u8 = 2;
const DATA_WRITTEN: u8 = 3;
const REMOVE: u8 = 4;
const GENERATION: u8 = 5;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("rollback log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0} is not a specmirror rollback log")]
    NotALog(PathBuf),
    #[error(
        "rollback log {path} belongs to another volume pair ({what}); use the log of this pair, or a new path"
    )]
    OtherPair { path: PathBuf, what: String },
    #[error("rollback log {0} is a directory")]
    IsDirectory(PathBuf),
    #[error("reading logged write {seq} back from the volume at byte {offset}: {source}")]
    DataRead {
        seq: u64,
        offset: u64,
        source: io::Error,
    },
}

/// What identifies the volume pair a log belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairIdentity {
    pub pair_id: [u8; 16],
    pub volume_size: u64,
    pub region_size: u64,
}

impl PairIdentity {
    fn header(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..8].copy_from_slice(MAGIC);
        h[8..24].copy_from_slice(&self.pair_id);
        h[24..32].copy_from_slice(&self.volume_size.to_le_bytes());
        h[32..40].copy_from_slice(&self.region_size.to_le_bytes());
        let crc = crc32c::crc32c(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn parse(h: &[u8; HEADER_LEN as usize]) -> Option<PairIdentity> {
        if &h[0..8] != MAGIC
            || crc32c::crc32c(&h[..60]) != u32::from_le_bytes(h[60..64].try_into().ok()?)
        {
            return None;
        }
        Some(PairIdentity {
            pair_id: h[8..24].try_into().ok()?,
            volume_size: u64::from_le_bytes(h[24..32].try_into().ok()?),
            region_size: u64::from_le_bytes(h[32..40].try_into().ok()?),
        })
    }
}

/// What replay found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// The live records; a client write's data is empty until [`Replayed::read_data`].
    pub records: Vec<LogRecord>,
    pub generation: u32,
    /// Bytes cut from a torn or damaged tail.
    pub truncated: u64,
}

impl Replayed {
    /// Fills in each client write's data from the volume it was written to.
    pub fn read_data(&mut self, volume: &crate::volume::Volume) -> Result<(), LogError> {
        for r in &mut self.records {
            if let Some(b) = r.before.as_ref().filter(|b| r.data.len() != b.len()) {
                let mut data = vec![0u8; b.len()];
                volume
                    .read_at(r.offset, &mut data)
                    .map_err(|source| LogError::DataRead {
                        seq: r.seq,
                        offset: r.offset,
                        source,
                    })?;
                r.data = data.into();
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct LogFile {
    file: File,
    path: PathBuf,
    identity: PairIdentity,
    /// Where each live record lies in the file: the data stays in the file (and in the core's
    /// own log), not a second time here.
    live: BTreeMap<u64, Live>,
    generation: u32,
    len: u64,
    /// Records appended but not yet written: they go out together at the next `flush` (the
    /// source flushes before every local write and after every batch of actions).
    pending: Vec<u8>,
    /// The images (before-images, compensations' data) of the PUT records in `pending`, each
    /// with where in `pending` it goes: shared with the record, not copied, and written with the
    /// rest in one vectored write.
    images: Vec<(usize, Bytes)>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl LogFile {
    /// Checks that `path` is usable as the log of `identity` without creating or changing it.
    pub fn check(path: &Path, identity: &PairIdentity) -> Result<(), LogError> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Err(LogError::IsDirectory(path.to_path_buf())),
            Ok(_) => {
                let mut f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                Self::check_header(&mut f, path, identity)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                std::fs::metadata(dir).map_err(io_err(dir))?;
                Ok(())
            }
            Err(e) => Err(io_err(path)(e)),
        }
    }

    fn check_header(f: &mut File, path: &Path, identity: &PairIdentity) -> Result<(), LogError> {
        let mut h = [0u8; HEADER_LEN as usize];
        f.read_exact(&mut h)
            .map_err(|_| LogError::NotALog(path.to_path_buf()))?;
        let found = PairIdentity::parse(&h).ok_or_else(|| LogError::NotALog(path.to_path_buf()))?;
        if found != *identity {
            let what = if found.pair_id != identity.pair_id {
                "different pair id".to_string()
            } else if found.volume_size != identity.volume_size {
                format!(
                    "volume size {} instead of {}",
                    found.volume_size, identity.volume_size
                )
            } else {
                format!(
                    "region size {} instead of {}",
                    found.region_size, identity.region_size
                )
            };
            return Err(LogError::OtherPair {
                path: path.to_path_buf(),
                what,
            });
        }
        Ok(())
    }

    /// Opens (or creates) the log and replays it.
    pub fn open(path: &Path, identity: PairIdentity) -> Result<(LogFile, Replayed), LogError> {
        Self::check(path, &identity)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        if len == 0 {
            file.write_all(&identity.header()).map_err(io_err(path))?;
            file.sync_all().map_err(io_err(path))?;
        } else {
            file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
            Self::check_header(&mut file, path, &identity)?;
        }
        let mut body = Vec::new();
        file.seek(SeekFrom::Start(HEADER_LEN))
            .map_err(io_err(path))?;
        file.read_to_end(&mut body).map_err(io_err(path))?;
        let mut records = BTreeMap::new();
        let mut live = BTreeMap::new();
        let mut generation = 0;
        let mut at = 0usize;
        while let Some((rec, used)) = parse_record(&body[at..]) {
            note(&mut live, &rec, HEADER_LEN + at as u64, used as u64);
            apply(&mut records, &mut generation, rec);
            at += used;
        }
        let good = HEADER_LEN + at as u64;
        let truncated = body.len() as u64 - at as u64;
        if truncated > 0 {
            file.set_len(good).map_err(io_err(path))?;
            file.sync_all().map_err(io_err(path))?;
        }
        file.seek(SeekFrom::Start(good)).map_err(io_err(path))?;
        let replayed = Replayed {
            records: records.into_values().collect(),
            generation,
            truncated,
        };
        Ok((
            LogFile {
                file,
                path: path.to_path_buf(),
                identity,
                live,
                generation,
                len: good,
                pending: Vec::new(),
                images: Vec::new(),
            },
            replayed,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the file occupies.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// Entries the log holds.
    pub fn live_entries(&self) -> usize {
        self.live.len()
    }

    pub fn put(&mut self, rec: &LogRecord) -> io::Result<()> {
        let at = self.len;
        let image = put_image(rec);
        let n = frame_record(&mut self.pending, |out| put_head(rec, out), image);
        self.images.push((self.pending.len(), image.clone()));
        self.len += n;
        note_put(&mut self.live, rec, at, n);
        Ok(())
    }

    pub fn lock_granted(&mut self, seq: u64) -> io::Result<()> {
        self.append(Rec::Seq(LOCK_GRANTED, seq))
    }

    pub fn data_written(&mut self, seq: u64) -> io::Result<()> {
        self.append(Rec::Seq(DATA_WRITTEN, seq))
    }

    pub fn remove(&mut self, seq: u64) -> io::Result<()> {
        self.append(Rec::Seq(REMOVE, seq))?;
        self.maybe_compact()
    }

    pub fn set_generation(&mut self, g: u32) -> io::Result<()> {
        self.append(Rec::Generation(g))
    }

    /// Writes the records appended so far to the file, in one write (a crash keeps a prefix).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut slices = Vec::with_capacity(2 * self.images.len() + 1);
        let mut from = 0;
        for (at, image) in &self.images {
            slices.push(IoSlice::new(&self.pending[from..*at]));
            slices.push(IoSlice::new(image));
            from = *at;
        }
        slices.push(IoSlice::new(&self.pending[from..]));
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match self.file.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pending.clear();
        self.images.clear();
        Ok(())
    }

    /// Makes every appended record durable (power-loss safety).
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }

    fn append(&mut self, rec: Rec) -> io::Result<()> {
        let at = self.len;
        let n = encode_record(&rec, &mut self.pending);
        self.len += n;
        note(&mut self.live, &rec, at, n);
        if let Rec::Generation(g) = rec {
            self.generation = g;
        }
        Ok(())
    }

    /// Cuts the file back once it has grown past COMPACT_MIN and most of it is dead. The records
    /// appended are written with the batch they belong to, not here, unless the file is cut.
    fn maybe_compact(&mut self) -> io::Result<()> {
        if self.len <= COMPACT_MIN {
            return Ok(());
        }
        if self.live.is_empty() {
            // Nothing unconfirmed: start the file over, keeping only the generation.
            self.flush()?;
            self.file.set_len(HEADER_LEN)?;
            self.file.seek(SeekFrom::Start(HEADER_LEN))?;
            self.len = HEADER_LEN;
            self.append(Rec::Generation(self.generation))?;
            return self.file.sync_data();
        }
        let live_bytes: u64 = self.live.values().map(|l| l.len).sum();
        if live_bytes * 4 < self.len {
            self.flush()?;
            self.rewrite()?;
        }
        Ok(())
    }

    /// Writes the live records to a new file and puts it in place of the old one.
    fn rewrite(&mut self) -> io::Result<()> {
        let tmp = self.path.with_extension("compact");
        let mut out = Vec::new();
        out.extend_from_slice(&self.identity.header());
        encode_record(&Rec::Generation(self.generation), &mut out);
        let mut live = BTreeMap::new();
        let mut buf = Vec::new();
        for (&seq, l) in &self.live {
            // Each live record read back from where it lies, with what happened to it since.
            buf.resize(l.len as usize, 0);
            self.file.read_exact_at(&mut buf, l.at)?;
            let Some((Rec::Put(mut r), _)) = parse_record(&buf) else {
                return Err(io::Error::other(format!(
                    "record {seq} at byte {} of the rollback log no longer reads back",
                    l.at
                )));
            };
            r.lock_pending = l.lock_pending;
            r.data_pending = l.data_pending;
            let at = out.len() as u64;
            let len = frame_record(&mut out, |o| put_body(&r, o), &[]);
            live.insert(seq, Live { at, len, ..*l });
        }
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) {
                let _ = d.sync_all();
            }
        }
        let mut file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        file.seek(SeekFrom::End(0))?;
        let old = std::mem::replace(&mut self.file, file);
        // The old file's last close frees its pages, megabytes of them: not on the caller's
        // thread, which is the mirror's.
        std::thread::Builder::new()
            .name("log-retire".into())
            .spawn(move || drop(old))
            .ok();
        self.len = out.len() as u64;
        self.live = live;
        Ok(())
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        // Best effort: an orderly stop leaves nothing unwritten.
        let _ = self.flush();
    }
}

enum Rec {
    Put(LogRecord),
    Seq(u8, u64),
    Generation(u32),
}

/// Where a live record lies in the file (its first byte and its length, prefix included), and
/// what the records after it changed.
#[derive(Clone, Copy, Debug)]
struct Live {
    at: u64,
    len: u64,
    lock_pending: bool,
    data_pending: bool,
}

/// Enters the PUT of `r`, found at byte `at` and `len` bytes long, in the index of live records.
fn note_put(live: &mut BTreeMap<u64, Live>, r: &LogRecord, at: u64, len: u64) {
    live.insert(
        r.seq,
        Live {
            at,
            len,
            lock_pending: r.lock_pending,
            data_pending: r.data_pending,
        },
    );
}

/// Follows `rec`, found at byte `at` and `len` bytes long, in the index of live records.
fn note(live: &mut BTreeMap<u64, Live>, rec: &Rec, at: u64, len: u64) {
    match rec {
        Rec::Put(r) => note_put(live, r, at, len),
        Rec::Seq(LOCK_GRANTED, s) => {
            if let Some(l) = live.get_mut(s) {
                l.lock_pending = false;
            }
        }
        Rec::Seq(DATA_WRITTEN, s) => {
            if let Some(l) = live.get_mut(s) {
                l.lock_pending = false;
                l.data_pending = false;
            }
        }
        Rec::Seq(_, s) => {
            live.remove(s);
        }
        Rec::Generation(_) => {}
    }
}

/// The records replay hands back, with their changes applied.
fn apply(live: &mut BTreeMap<u64, LogRecord>, generation: &mut u32, rec: Rec) {
    match rec {
        Rec::Put(r) => {
            live.insert(r.seq, r);
        }
        Rec::Seq(LOCK_GRANTED, s) => {
            if let Some(r) = live.get_mut(&s) {
                r.lock_pending = false;
            }
        }
        Rec::Seq(DATA_WRITTEN, s) => {
            if let Some(r) = live.get_mut(&s) {
                r.lock_pending = false;
                r.data_pending = false;
            }
        }
        Rec::Seq(_, s) => {
            live.remove(&s);
        }
        Rec::Generation(g) => *generation = g,
    }
}

/// Appends `rec` to `out`; its length in bytes.
fn encode_record(rec: &Rec, out: &mut Vec<u8>) -> u64 {
    frame_record(
        out,
        |out| match rec {
            Rec::Put(r) => put_body(r, out),
            Rec::Seq(kind, seq) => {
                out.push(*kind);
                out.extend_from_slice(&seq.to_le_bytes());
            }
            Rec::Generation(g) => {
                out.push(GENERATION);
                out.extend_from_slice(&g.to_le_bytes());
            }
        },
        &[],
    )
}

/// A PUT record's body, from the record where it is: a client write's before-image without its
/// data (which is on the volume), a compensation's data.
fn put_body(r: &LogRecord, out: &mut Vec<u8>) {
    put_head(r, out);
    out.extend_from_slice(put_image(r));
}

/// What a PUT record's body ends with: a client write's before-image, or a compensation's data.
fn put_image(r: &LogRecord) -> &Bytes {
    r.before.as_ref().unwrap_or(&r.data)
}

/// A PUT record's body up to its image.
fn put_head(r: &LogRecord, out: &mut Vec<u8>) {
    out.push(PUT);
    out.extend_from_slice(&r.seq.to_le_bytes());
    out.extend_from_slice(&r.offset.to_le_bytes());
    let on_volume = r.before.is_some();
    let flags = (r.fua as u8)
        | (r.before.is_some() as u8) << 1
        | (r.lock_pending as u8) << 2
        | (r.data_pending as u8) << 3
        | (on_volume as u8) << 4;
    out.push(flags);
    out.extend_from_slice(&(put_image(r).len() as u32).to_le_bytes());
}

/// Appends a record whose body `body` writes, behind its length and CRC32C; its length in
/// bytes, prefix included. `image`, the end of the body, is counted in the length and the CRC
/// but not appended: the caller writes it from where it lies (or passes it empty and lets
/// `body` write the whole body).
fn frame_record(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>), image: &[u8]) -> u64 {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    body(out);
    let head = &out[start + 8..];
    let body_len = (head.len() + image.len()) as u32;
    let crc = crc32c::crc32c_append(crc32c::crc32c(head), image);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    8 + body_len as u64
}

/// One record from the front of `b`, or None at the end or at a torn or damaged record.
fn parse_record(b: &[u8]) -> Option<(Rec, usize)> {
    let len = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?);
    let body = b.get(8..8 + len)?;
    if crc32c::crc32c(body) != crc || body.is_empty() {
        return None;
    }
    let u64_at = |o: usize| -> Option<u64> {
        Some(u64::from_le_bytes(body.get(o..o + 8)?.try_into().ok()?))
    };
    let rec = match body[0] {
        PUT => {
            let seq = u64_at(1)?;
            let offset = u64_at(9)?;
            let flags = *body.get(17)?;
            let n = u32::from_le_bytes(body.get(18..22)?.try_into().ok()?) as usize;
            let has_before = flags & 2 != 0;
            let on_volume = flags & 16 != 0;
            if on_volume && !has_before {
                return None;
            }
            // Written before the data left the record: both, data first.
            let data = if on_volume {
                Bytes::new()
            } else {
                Bytes::copy_from_slice(body.get(22..22 + n)?)
            };
            let at = if on_volume { 22 } else { 22 + n };
            let before = if has_before {
                Some(Bytes::copy_from_slice(body.get(at..at + n)?))
            } else {
                None
            };
            if body.len() != at + if has_before { n } else { 0 } {
                return None;
            }
            Rec::Put(LogRecord {
                seq,
                offset,
                data,
                before,
                fua: flags & 1 != 0,
                lock_pending: flags & 4 != 0,
                data_pending: flags & 8 != 0,
            })
        }
        k @ (LOCK_GRANTED | DATA_WRITTEN | REMOVE) if body.len() == 9 => Rec::Seq(k, u64_at(1)?),
        GENERATION if body.len() == 5 => {
            Rec::Generation(u32::from_le_bytes(body.get(1..5)?.try_into().ok()?))
        }
        _ => return None,
    };
    Some((rec, 8 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> PairIdentity {
        PairIdentity {
            pair_id: *b"0123456789abcdef",
            volume_size: 1 << 20,
            region_size: 4096,
        }
    }

    fn rec(seq: u64, fill: u8) -> LogRecord {
        LogRecord {
            seq,
            offset: seq * 100,
            data: vec![fill; 10].into(),
            before: Some(vec![0; 10].into()),
            fua: seq.is_multiple_of(2),
            lock_pending: true,
            data_pending: true,
        }
    }

    #[test]
    fn replays_what_was_appended() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let (mut log, r) = LogFile::open(&p, id()).unwrap();
        assert!(r.records.is_empty());
        log.set_generation(3).unwrap();
        log.put(&rec(1, 1)).unwrap();
        log.put(&rec(2, 2)).unwrap();
        log.lock_granted(1).unwrap();
        log.data_written(2).unwrap();
        log.put(&rec(3, 3)).unwrap();
        log.remove(3).unwrap();
        let mut compensation = rec(4, 4);
        compensation.before = None;
        log.put(&compensation).unwrap();
        drop(log);
        let (_, r) = LogFile::open(&p, id()).unwrap();
        assert_eq!(r.generation, 3);
        assert_eq!(r.truncated, 0);
        let seqs: Vec<u64> = r.records.iter().map(|x| x.seq).collect();
        assert_eq!(seqs, vec![1, 2, 4]);
        assert!(!r.records[0].lock_pending && r.records[0].data_pending);
        assert!(!r.records[1].data_pending);
        assert_eq!(r.records[2].before, None);
        // The client writes' data is not in the file; the compensation's is.
        assert!(r.records[0].data.is_empty() && r.records[1].data.is_empty());
        assert_eq!(r.records[2].data, rec(4, 4).data);
        // It is read back from the volume, where each write went after its record.
        let volume = crate::volume::Volume::open(&d.path().join("vol"), Some(4096)).unwrap();
        for x in [rec(1, 1), rec(2, 2)] {
            volume.write_at(x.offset, &x.data).unwrap();
        }
        let mut r = r;
        r.read_data(&volume).unwrap();
        assert_eq!(r.records[0].data, rec(1, 1).data);
        assert_eq!(
            r.records[2].data,
            rec(4, 4).data,
            "a compensation is not read back"
        );
        assert_eq!(r.records[1], {
            let mut x = rec(2, 2);
            x.lock_pending = false;
            x.data_pending = false;
            x
        });
    }

    /// Records whose images go out by reference, in one vectored write, are the very bytes of
    /// their encoding in one buffer.
    #[test]
    fn images_written_in_place_are_the_records_bytes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let (mut log, _) = LogFile::open(&p, id()).unwrap();
        let mut want = Vec::new();
        let mut compensation = rec(3, 3);
        compensation.before = None;
        for (k, r) in [rec(1, 1), rec(2, 2), compensation].iter().enumerate() {
            log.put(r).unwrap();
            frame_record(&mut want, |o| put_body(r, o), &[]);
            log.lock_granted(k as u64).unwrap();
            encode_record(&Rec::Seq(LOCK_GRANTED, k as u64), &mut want);
        }
        log.flush().unwrap();
        log.remove(1).unwrap();
        encode_record(&Rec::Seq(REMOVE, 1), &mut want);
        log.flush().unwrap();
        assert_eq!(log.file_len(), HEADER_LEN + want.len() as u64);
        let on_disk = std::fs::read(&p).unwrap();
        assert!(on_disk[HEADER_LEN as usize..] == want[..]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let (mut log, _) = LogFile::open(&p, id()).unwrap();
        log.put(&rec(1, 1)).unwrap();
        log.put(&rec(2, 2)).unwrap();
        drop(log);
        let full = std::fs::metadata(&p).unwrap().len();
        // Tear the last record in half, as a crash mid-append would.
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(full - 7).unwrap();
        let (_, r) = LogFile::open(&p, id()).unwrap();
        assert_eq!(r.records.len(), 1);
        assert!(r.truncated > 0);
        // Damage a byte inside the only remaining record: replay stops before it.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[HEADER_LEN as usize + 20] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        let (_, r) = LogFile::open(&p, id()).unwrap();
        assert!(r.records.is_empty());
    }

    #[test]
    fn a_log_of_another_pair_is_refused_and_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let (mut log, _) = LogFile::open(&p, id()).unwrap();
        log.put(&rec(1, 1)).unwrap();
        drop(log);
        let before = std::fs::read(&p).unwrap();
        let mut other = id();
        other.volume_size *= 2;
        let e = LogFile::open(&p, other).unwrap_err();
        assert!(e.to_string().contains("volume size"), "{e}");
        other = id();
        other.pair_id[0] ^= 1;
        assert!(matches!(
            LogFile::open(&p, other),
            Err(LogError::OtherPair { .. })
        ));
        assert_eq!(std::fs::read(&p).unwrap(), before);
        std::fs::write(
            d.path().join("junk"),
            b"not a log at all, just some bytes here......",
        )
        .unwrap();
        assert!(matches!(
            LogFile::open(&d.path().join("junk"), id()),
            Err(LogError::NotALog(_))
        ));
        assert!(matches!(
            LogFile::open(d.path(), id()),
            Err(LogError::IsDirectory(_))
        ));
    }

    #[test]
    fn an_emptied_log_is_cut_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let (mut log, _) = LogFile::open(&p, id()).unwrap();
        log.set_generation(9).unwrap();
        // 70 MiB of records, each removed once put: the file is started over past COMPACT_MIN.
        for i in 1..=70u64 {
            let mut r = rec(i, 1);
            r.data = vec![1; 1 << 20].into();
            r.before = Some(vec![0; 1 << 20].into());
            log.put(&r).unwrap();
            log.remove(i).unwrap();
            log.flush().unwrap();
        }
        assert!(log.file_len() < 8 << 20, "{}", log.file_len());
        drop(log);
        let (_, r) = LogFile::open(&p, id()).unwrap();
        assert!(r.records.is_empty());
        assert_eq!(r.generation, 9, "the generation survives the cut");
    }

    /// A log mostly dead is rewritten with its live records, read back from the file, with what
    /// happened to them since; twice, so the second rewrite reads from where the first put them.
    #[test]
    fn a_mostly_dead_log_is_rewritten_with_its_live_records() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let (mut log, _) = LogFile::open(&p, id()).unwrap();
        log.set_generation(5).unwrap();
        // Records of 2 MiB each (a client write's record holds its before-image).
        let big = |seq: u64| {
            let mut r = rec(seq, seq as u8);
            r.data = vec![seq as u8; 2 << 20].into();
            r.before = Some(vec![!(seq as u8); 2 << 20].into());
            r
        };
        let mut kept = vec![];
        let mut rewrites = 0;
        let mut seq = 0;
        while rewrites < 2 {
            seq += 1;
            log.put(&big(seq)).unwrap();
            match seq % 16 {
                // Kept: one granted, one written on the target, one as it was.
                1 => log.lock_granted(seq).unwrap(),
                2 => log.data_written(seq).unwrap(),
                3 => {}
                _ => {
                    let before = log.file_len();
                    log.remove(seq).unwrap();
                    if log.file_len() < before {
                        // Rewritten: the file holds the live records and nothing else.
                        rewrites += 1;
                        let each = (2 << 20) + 64;
                        assert!(log.file_len() < HEADER_LEN + 64 + kept.len() as u64 * each);
                    }
                    continue;
                }
            }
            kept.push(seq);
            assert!(seq < 200, "no rewrite after {seq} records");
        }
        assert_eq!(log.live_entries(), kept.len());
        drop(log);
        let (_, r) = LogFile::open(&p, id()).unwrap();
        assert_eq!((r.generation, r.truncated), (5, 0));
        assert_eq!(r.records.iter().map(|x| x.seq).collect::<Vec<_>>(), kept);
        for x in &r.records {
            let mut want = big(x.seq);
            want.data = Bytes::new(); // on the volume
            want.lock_pending = x.seq % 16 == 3;
            want.data_pending = x.seq % 16 != 2;
            assert!(*x == want, "record {} read back otherwise", x.seq);
        }
    }
}
