//! The NBD front end: the fixed-newstyle handshake and the transmission phase with simple replies.
//!
//! Options: EXPORT_NAME, INFO, GO, LIST and ABORT; anything else is answered "unsupported".
//! Commands: READ (served from the source volume), WRITE (with FUA), WRITE_ZEROES, TRIM, FLUSH and
//! DISC. Writes and flushes go to the mirror through a channel and are answered only when the
//! mirror has confirmed them. A request past the end of the volume gets an error and changes
//! nothing. TRIM is advisory: it is accepted and leaves both copies as they are.

use std::sync::Arc;

use specmirror_core::errno;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::volume::Volume;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const CLIENT_FIXED_NEWSTYLE: u32 = 1;
const CLIENT_NO_ZEROES: u32 = 2;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = 0x8000_0001;
const REP_ERR_INVALID: u32 = 0x8000_0003;
const REP_ERR_UNKNOWN: u32 = 0x8000_0006;

const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

const TF_HAS_FLAGS: u16 = 1;
const TF_SEND_FLUSH: u16 = 4;
const TF_SEND_FUA: u16 = 8;
const TF_SEND_TRIM: u16 = 32;
const TF_SEND_WRITE_ZEROES: u16 = 64;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;
const CMD_FLAG_FUA: u16 = 1;

/// Longest option payload accepted during the handshake.
const MAX_OPTION: u32 = 64 << 10;
/// Longest request accepted; larger ones are refused.
pub const MAX_REQUEST: u32 = 32 << 20;
/// Largest piece handed to the mirror at once (a frame's payload).
const CHUNK: usize = specmirror_abi::MAX_PAYLOAD as usize;

/// What the front end asks of the mirror.
#[derive(Debug)]
pub enum IoRequest {
    Write {
        offset: u64,
        data: Vec<u8>,
        fua: bool,
        /// When the front end had the whole request (for the stage breakdown).
        received: std::time::Instant,
        reply: Answer,
    },
    Flush {
        reply: oneshot::Sender<Result<(), i32>>,
    },
    /// Only for an export with `reads_through_mirror`: the mirror orders the read among the
    /// writes of both nodes of a bidirectional pair.
    Read {
        offset: u64,
        len: u64,
        reply: oneshot::Sender<Result<Vec<u8>, i32>>,
    },
}

/// Where a write's outcome goes: straight into its client's reply queue (no task waits for it),
/// or to whoever waits on a oneshot channel. An answer dropped unsent tells of an I/O error, so
/// that no client waits forever for a write the mirror let go of.
#[derive(Debug)]
pub struct Answer(Option<AnswerTo>);

#[derive(Debug)]
enum AnswerTo {
    Waiter(oneshot::Sender<Result<(), i32>>),
    Client {
        replies: mpsc::UnboundedSender<Reply>,
        cookie: u64,
        /// The write's share of the in-flight budget, given back once it is answered.
        _share: tokio::sync::OwnedSemaphorePermit,
    },
}

impl AnswerTo {
    fn deliver(self, r: Result<(), i32>) -> Result<(), Result<(), i32>> {
        match self {
            AnswerTo::Waiter(tx) => tx.send(r),
            AnswerTo::Client {
                replies, cookie, ..
            } => replies
                .send(Reply {
                    cookie,
                    error: r.err().unwrap_or(0) as u32,
                    data: Vec::new(),
                    share: None,
                })
                .map_err(|_| r),
        }
    }
}

impl Answer {
    /// An answer awaited on the returned receiver.
    pub fn channel() -> (Answer, oneshot::Receiver<Result<(), i32>>) {
        let (tx, rx) = oneshot::channel();
        (Answer(Some(AnswerTo::Waiter(tx))), rx)
    }

    fn client(
        replies: mpsc::UnboundedSender<Reply>,
        cookie: u64,
        share: tokio::sync::OwnedSemaphorePermit,
    ) -> Answer {
        Answer(Some(AnswerTo::Client {
            replies,
            cookie,
            _share: share,
        }))
    }

    /// Delivers the outcome; gives it back if nobody is there to take it any more.
    pub fn send(mut self, r: Result<(), i32>) -> Result<(), Result<(), i32>> {
        match self.0.take() {
            Some(to) => to.deliver(r),
            None => Ok(()),
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(to) = self.0.take() {
            to.deliver(Err(errno::EIO)).ok();
        }
    }
}

/// One export: the volume it reads from and the mirror it writes through.
#[derive(Debug)]
pub struct Export {
    pub name: String,
    pub volume: Volume,
    pub mirror: mpsc::Sender<IoRequest>,
    /// Bytes of writes in flight across all clients, in KiB permits: a write waits for its share
    /// before it reaches the mirror and gives it back when answered. This bounds the rollback log
    /// and memory however many requests clients pipeline (and while the target is away).
    pub inflight: Arc<Budget>,
    /// Reads go to the mirror ([`IoRequest::Read`]) instead of straight to the volume.
    pub reads_through_mirror: bool,
}

/// A budget of bytes in flight, kept in KiB. One request never asks for more than the whole
/// budget, so a request larger than the budget runs alone instead of waiting forever.
#[derive(Debug)]
pub struct Budget {
    sem: Arc<tokio::sync::Semaphore>,
    cap_kib: u32,
}

impl Budget {
    /// Waits for a share of `bytes` (at least 1 KiB), held until the permit is dropped. The
    /// budget is never closed; were it, the request would fail as if the mirror were gone.
    pub async fn take_share(
        &self,
        bytes: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, NbdError> {
        let want = bytes.div_ceil(1024).clamp(1, self.cap_kib as u64) as u32;
        self.sem
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| NbdError::MirrorGone)
    }
}

/// An in-flight budget of `bytes` (at least 1 MiB).
pub fn inflight_budget(bytes: u64) -> Arc<Budget> {
    let cap_kib = (bytes / 1024).clamp(1024, u32::MAX as u64 / 2) as u32;
    Arc::new(Budget {
        sem: Arc::new(tokio::sync::Semaphore::new(cap_kib as usize)),
        cap_kib,
    })
}

/// A mirror of nothing: writes go straight to `volume` and are confirmed at once. What the
/// benchmark's physical floor serves (one remote pwrite per write), and what tests use.
pub fn direct_mirror(volume: Volume) -> mpsc::Sender<IoRequest> {
    let (tx, mut rx) = mpsc::channel::<IoRequest>(1024);
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            match req {
                IoRequest::Write {
                    offset,
                    data,
                    reply,
                    ..
                } => {
                    let r = volume.write_at(offset, &data).map_err(|_| errno::EIO);
                    reply.send(r).ok();
                }
                IoRequest::Flush { reply } => {
                    reply.send(volume.sync().map_err(|_| errno::EIO)).ok();
                }
                IoRequest::Read { offset, len, reply } => {
                    let mut b = vec![0u8; len as usize];
                    reply
                        .send(
                            volume
                                .read_at(offset, &mut b)
                                .map(|_| b)
                                .map_err(|_| errno::EIO),
                        )
                        .ok();
                }
            }
        }
    });
    tx
}

#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    #[error("client does not speak fixed newstyle NBD")]
    NotFixedNewstyle,
    #[error("client sent unknown handshake flags {0:#x}")]
    BadClientFlags(u32),
    #[error("bad option magic {0:#x}")]
    BadOptionMagic(u64),
    #[error("option {0} with {1} bytes of data exceeds the limit")]
    OptionTooLong(u32, u32),
    #[error("client asked for unknown export {0:?}")]
    UnknownExport(String),
    #[error("bad request magic {0:#x}")]
    BadRequestMagic(u32),
    #[error("request of {0} bytes exceeds the {MAX_REQUEST}-byte limit")]
    RequestTooLong(u32),
    #[error("the mirror is gone")]
    MirrorGone,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn transmission_flags() -> u16 {
    TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_SEND_TRIM | TF_SEND_WRITE_ZEROES
}

async fn option_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    opt: u32,
    ty: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&opt.to_be_bytes());
    b.extend_from_slice(&ty.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    w.write_all(&b).await
}

/// Serves one client connection to the end.
pub async fn serve<S>(mut s: S, export: Arc<Export>) -> Result<(), NbdError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if !handshake(&mut s, &export).await? {
        return Ok(());
    }
    transmission(s, export).await
}

/// The option haggling; returns whether the client entered the transmission phase.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    export: &Export,
) -> Result<bool, NbdError> {
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello).await?;
    let cflags = s.read_u32().await?;
    if cflags & CLIENT_FIXED_NEWSTYLE == 0 {
        return Err(NbdError::NotFixedNewstyle);
    }
    if cflags & !(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES) != 0 {
        return Err(NbdError::BadClientFlags(cflags));
    }
    let no_zeroes = cflags & CLIENT_NO_ZEROES != 0;
    let size = export.volume.size();
    loop {
        let magic = s.read_u64().await?;
        if magic != IHAVEOPT {
            return Err(NbdError::BadOptionMagic(magic));
        }
        let opt = s.read_u32().await?;
        let len = s.read_u32().await?;
        if len > MAX_OPTION {
            return Err(NbdError::OptionTooLong(opt, len));
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).await?;
        match opt {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).into_owned();
                if !name.is_empty() && name != export.name {
                    // This option has no error reply: all we can do is hang up.
                    return Err(NbdError::UnknownExport(name));
                }
                let mut b = Vec::new();
                b.extend_from_slice(&size.to_be_bytes());
                b.extend_from_slice(&transmission_flags().to_be_bytes());
                if !no_zeroes {
                    b.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&b).await?;
                return Ok(true);
            }
            OPT_ABORT => {
                option_reply(s, opt, REP_ACK, &[]).await?;
                return Ok(false);
            }
            OPT_LIST => {
                if len != 0 {
                    option_reply(s, opt, REP_ERR_INVALID, b"LIST takes no data").await?;
                    continue;
                }
                let mut d = (export.name.len() as u32).to_be_bytes().to_vec();
                d.extend_from_slice(export.name.as_bytes());
                option_reply(s, opt, REP_SERVER, &d).await?;
                option_reply(s, opt, REP_ACK, &[]).await?;
            }
            OPT_INFO | OPT_GO => {
                let Some(name) = parse_info_request(&data) else {
                    option_reply(s, opt, REP_ERR_INVALID, b"malformed INFO/GO request").await?;
                    continue;
                };
                if !name.is_empty() && name != export.name {
                    option_reply(s, opt, REP_ERR_UNKNOWN, b"no such export").await?;
                    continue;
                }
                let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&size.to_be_bytes());
                info.extend_from_slice(&transmission_flags().to_be_bytes());
                option_reply(s, opt, REP_INFO, &info).await?;
                let mut bs = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                bs.extend_from_slice(&1u32.to_be_bytes());
                bs.extend_from_slice(&4096u32.to_be_bytes());
                bs.extend_from_slice(&MAX_REQUEST.to_be_bytes());
                option_reply(s, opt, REP_INFO, &bs).await?;
                option_reply(s, opt, REP_ACK, &[]).await?;
                if opt == OPT_GO {
                    return Ok(true);
                }
            }
            _ => {
                option_reply(s, opt, REP_ERR_UNSUP, b"option not supported").await?;
            }
        }
    }
}

/// `u32 name length, name, u16 count, count × u16`: the export name, if well formed.
fn parse_info_request(d: &[u8]) -> Option<String> {
    let n = u32::from_be_bytes(d.get(0..4)?.try_into().ok()?) as usize;
    let name = d.get(4..4 + n)?;
    let k = u16::from_be_bytes(d.get(4 + n..6 + n)?.try_into().ok()?) as usize;
    if d.len() != 6 + n + 2 * k {
        return None;
    }
    Some(String::from_utf8_lossy(name).into_owned())
}

#[derive(Debug)]
struct Reply {
    cookie: u64,
    error: u32,
    data: Vec<u8>,
    /// A read's share of the in-flight budget, held until its data has been written out.
    share: Option<tokio::sync::OwnedSemaphorePermit>,
}

async fn transmission<S>(s: S, export: Arc<Export>) -> Result<(), NbdError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (r, mut w) = tokio::io::split(s);
    // Requests are read through a buffer: a pipelining client's headers and small payloads
    // arrive in a few reads instead of two per request.
    let mut r = tokio::io::BufReader::with_capacity(256 << 10, r);
    // Unbounded in count, bounded in bytes: a read's reply holds its share of the budget until
    // written, and writes answered hold none (they are 16 bytes each).
    let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
    let writer = tokio::spawn(async move {
        // The replies ready together leave in one write (up to about a megabyte).
        let mut b = Vec::new();
        let mut shares = Vec::new();
        while let Some(rep) = rx.recv().await {
            b.clear();
            let mut next = Some(rep);
            while let Some(rep) = next.take() {
                b.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
                b.extend_from_slice(&rep.error.to_be_bytes());
                b.extend_from_slice(&rep.cookie.to_be_bytes());
                b.extend_from_slice(&rep.data);
                shares.push(rep.share);
                if b.len() < 1 << 20 {
                    next = rx.try_recv().ok();
                }
            }
            w.write_all(&b).await?;
            w.flush().await?;
            shares.clear();
        }
        w.flush().await?;
        Ok::<(), std::io::Error>(())
    });
    let size = export.volume.size();
    let result = async {
        loop {
            let mut hdr = [0u8; 28];
            match r.read_exact(&mut hdr).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let magic = u32::from_be_bytes(hdr[0..4].try_into().expect("4"));
            if magic != REQUEST_MAGIC {
                return Err(NbdError::BadRequestMagic(magic));
            }
            let flags = u16::from_be_bytes(hdr[4..6].try_into().expect("2"));
            let ty = u16::from_be_bytes(hdr[6..8].try_into().expect("2"));
            let cookie = u64::from_be_bytes(hdr[8..16].try_into().expect("8"));
            let offset = u64::from_be_bytes(hdr[16..24].try_into().expect("8"));
            let len = u32::from_be_bytes(hdr[24..28].try_into().expect("4"));
            let in_range = offset.checked_add(len as u64).is_some_and(|e| e <= size);
            let fua = flags & CMD_FLAG_FUA != 0;
            let reply = move |error: i32| Reply {
                cookie,
                error: error as u32,
                data: Vec::new(),
                share: None,
            };
            match ty {
                CMD_READ => {
                    if len > MAX_REQUEST || !in_range {
                        tx.send(reply(errno::EINVAL)).ok();
                        continue;
                    }
                    let share = Some(export.inflight.take_share(len as u64).await?);
                    if export.reads_through_mirror {
                        let mirror = export.mirror.clone();
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let (rtx, rrx) = oneshot::channel();
                            let req = IoRequest::Read {
                                offset,
                                len: len as u64,
                                reply: rtx,
                            };
                            let rep = match mirror.send(req).await {
                                Ok(()) => rrx.await.unwrap_or(Err(errno::EIO)),
                                Err(_) => Err(errno::EIO),
                            };
                            let (error, data) = match rep {
                                Ok(data) => (0, data),
                                Err(e) => (e as u32, Vec::new()),
                            };
                            tx.send(Reply {
                                cookie,
                                error,
                                data,
                                share,
                            })
                            .ok();
                        });
                        continue;
                    }
                    let mut data = vec![0u8; len as usize];
                    let rep = match export.volume.read_at(offset, &mut data) {
                        Ok(()) => Reply {
                            cookie,
                            error: 0,
                            data,
                            share,
                        },
                        Err(_) => reply(errno::EIO),
                    };
                    tx.send(rep).ok();
                }
                CMD_WRITE => {
                    if len > MAX_REQUEST {
                        // The payload cannot be skipped safely: refuse and hang up.
                        tx.send(reply(errno::EINVAL)).ok();
                        return Err(NbdError::RequestTooLong(len));
                    }
                    let data = crate::wire::read_owned(&mut r, len as usize).await?;
                    if !in_range {
                        tx.send(reply(errno::ENOSPC)).ok();
                        continue;
                    }
                    if data.len() <= CHUNK {
                        // One piece (nearly every write): handed to the mirror here, in the
                        // order read, and answered straight into the reply queue.
                        let share = export.inflight.take_share(len as u64).await?;
                        let req = IoRequest::Write {
                            offset,
                            data,
                            fua,
                            received: std::time::Instant::now(),
                            reply: Answer::client(tx.clone(), cookie, share),
                        };
                        if let Err(mpsc::error::SendError(IoRequest::Write { reply, .. })) =
                            export.mirror.send(req).await
                        {
                            reply.send(Err(errno::EIO)).ok();
                        }
                        continue;
                    }
                    spawn_writes(&export, &tx, cookie, offset, Payload::Data(data), fua);
                }
                CMD_WRITE_ZEROES => {
                    if !in_range {
                        tx.send(reply(errno::ENOSPC)).ok();
                        continue;
                    }
                    spawn_writes(
                        &export,
                        &tx,
                        cookie,
                        offset,
                        Payload::Zeroes(len as u64),
                        fua,
                    );
                }
                CMD_TRIM => {
                    let e = if in_range { 0 } else { errno::EINVAL };
                    tx.send(reply(e)).ok();
                }
                CMD_FLUSH => {
                    let mirror = export.mirror.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let (rtx, rrx) = oneshot::channel();
                        let e = match mirror.send(IoRequest::Flush { reply: rtx }).await {
                            Ok(()) => rrx.await.unwrap_or(Err(errno::EIO)).err().unwrap_or(0),
                            Err(_) => errno::EIO,
                        };
                        tx.send(reply(e)).ok();
                    });
                }
                CMD_DISC => return Ok(()),
                _ => {
                    tx.send(reply(errno::EINVAL)).ok();
                }
            }
        }
    }
    .await;
    drop(tx);
    // Outstanding requests still get their answers before the connection closes.
    let flushed = writer.await.map_err(std::io::Error::other)?;
    result?;
    flushed?;
    Ok(())
}

enum Payload {
    Data(Vec<u8>),
    Zeroes(u64),
}

/// Hands a write to the mirror in frame-sized pieces, one after another, and answers the client
/// once every piece is confirmed (or with the first error).
fn spawn_writes(
    export: &Export,
    tx: &mpsc::UnboundedSender<Reply>,
    cookie: u64,
    offset: u64,
    mut payload: Payload,
    fua: bool,
) {
    let mirror = export.mirror.clone();
    let budget = export.inflight.clone();
    let tx = tx.clone();
    tokio::spawn(async move {
        let len = match &payload {
            Payload::Data(d) => d.len() as u64,
            Payload::Zeroes(n) => *n,
        };
        let Ok(_held) = budget.take_share(len).await else {
            return;
        };
        let mut pending = Vec::new();
        let mut error = 0;
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(CHUNK as u64) as usize;
            let data = match &mut payload {
                // A write of one piece (nearly all of them) hands its buffer over, uncopied.
                Payload::Data(d) if at == 0 && n == d.len() => std::mem::take(d),
                Payload::Data(d) => d[at as usize..at as usize + n].to_vec(),
                Payload::Zeroes(_) => vec![0u8; n],
            };
            let (answer, rrx) = Answer::channel();
            let req = IoRequest::Write {
                offset: offset + at,
                data,
                fua,
                received: std::time::Instant::now(),
                reply: answer,
            };
            if mirror.send(req).await.is_err() {
                error = errno::EIO;
                break;
            }
            pending.push(rrx);
            // Bound what one request keeps in flight: 16 pieces (64 MiB).
            if pending.len() >= 16 {
                if let Err(e) = pending.remove(0).await.unwrap_or(Err(errno::EIO)) {
                    error = e;
                    break;
                }
            }
            at += n as u64;
        }
        for p in pending {
            if let Err(e) = p.await.unwrap_or(Err(errno::EIO)) {
                if error == 0 {
                    error = e;
                }
            }
        }
        tx.send(Reply {
            cookie,
            error: error as u32,
            data: Vec::new(),
            share: None,
        })
        .ok();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(dir: &std::path::Path) -> Arc<Export> {
        let volume = Volume::open(&dir.join("v"), Some(1 << 20)).unwrap();
        Arc::new(Export {
            name: "vol".into(),
            mirror: direct_mirror(volume.clone()),
            volume,
            inflight: inflight_budget(64 << 20),
            reads_through_mirror: false,
        })
    }

    async fn opt<S: AsyncWrite + Unpin>(c: &mut S, o: u32, data: &[u8]) {
        c.write_u64(IHAVEOPT).await.unwrap();
        c.write_u32(o).await.unwrap();
        c.write_u32(data.len() as u32).await.unwrap();
        c.write_all(data).await.unwrap();
    }

    async fn read_reply<S: AsyncRead + Unpin>(c: &mut S) -> (u32, u32, Vec<u8>) {
        assert_eq!(c.read_u64().await.unwrap(), REPLY_MAGIC);
        let o = c.read_u32().await.unwrap();
        let t = c.read_u32().await.unwrap();
        let n = c.read_u32().await.unwrap();
        let mut d = vec![0; n as usize];
        c.read_exact(&mut d).await.unwrap();
        let _ = o;
        (o, t, d)
    }

    async fn request<S: AsyncWrite + Unpin>(c: &mut S, ty: u16, cookie: u64, off: u64, len: u32) {
        c.write_u32(REQUEST_MAGIC).await.unwrap();
        c.write_u16(0).await.unwrap();
        c.write_u16(ty).await.unwrap();
        c.write_u64(cookie).await.unwrap();
        c.write_u64(off).await.unwrap();
        c.write_u32(len).await.unwrap();
    }

    async fn simple<S: AsyncRead + Unpin>(c: &mut S) -> (u32, u64) {
        assert_eq!(c.read_u32().await.unwrap(), SIMPLE_REPLY_MAGIC);
        (c.read_u32().await.unwrap(), c.read_u64().await.unwrap())
    }

    #[tokio::test]
    async fn handshake_list_info_go_and_io() {
        let d = tempfile::tempdir().unwrap();
        let e = export(d.path());
        let (mut c, s) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(serve(s, e.clone()));
        assert_eq!(c.read_u64().await.unwrap(), NBDMAGIC);
        assert_eq!(c.read_u64().await.unwrap(), IHAVEOPT);
        assert_eq!(c.read_u16().await.unwrap(), 3);
        c.write_u32(3).await.unwrap();
        opt(&mut c, 99, b"").await;
        assert_eq!(read_reply(&mut c).await.1, REP_ERR_UNSUP);
        opt(&mut c, OPT_LIST, b"").await;
        let (_, t, dd) = read_reply(&mut c).await;
        assert_eq!(t, REP_SERVER);
        assert_eq!(&dd[4..], b"vol");
        assert_eq!(read_reply(&mut c).await.1, REP_ACK);
        let mut go = 5u32.to_be_bytes().to_vec();
        go.extend_from_slice(b"other");
        go.extend_from_slice(&0u16.to_be_bytes());
        opt(&mut c, OPT_GO, &go).await;
        assert_eq!(read_reply(&mut c).await.1, REP_ERR_UNKNOWN);
        opt(&mut c, OPT_GO, &[0, 0, 0, 9]).await;
        assert_eq!(read_reply(&mut c).await.1, REP_ERR_INVALID);
        let go = [0u8, 0, 0, 0, 0, 0];
        opt(&mut c, OPT_GO, &go).await;
        let (_, t, info) = read_reply(&mut c).await;
        assert_eq!(t, REP_INFO);
        assert_eq!(u64::from_be_bytes(info[2..10].try_into().unwrap()), 1 << 20);
        assert_eq!(read_reply(&mut c).await.1, REP_INFO);
        assert_eq!(read_reply(&mut c).await.1, REP_ACK);
        // Transmission: write, read back, out of range, flush, trim, zeroes.
        request(&mut c, CMD_WRITE, 1, 4090, 10).await;
        c.write_all(&[7u8; 10]).await.unwrap();
        assert_eq!(simple(&mut c).await, (0, 1));
        request(&mut c, CMD_READ, 2, 4088, 14).await;
        assert_eq!(simple(&mut c).await, (0, 2));
        let mut got = [0u8; 14];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0, 0]);
        request(&mut c, CMD_WRITE, 3, (1 << 20) - 4, 8).await;
        c.write_all(&[1u8; 8]).await.unwrap();
        assert_eq!(simple(&mut c).await, (errno::ENOSPC as u32, 3));
        request(&mut c, CMD_READ, 4, 1 << 20, 1).await;
        assert_eq!(simple(&mut c).await, (errno::EINVAL as u32, 4));
        request(&mut c, CMD_FLUSH, 5, 0, 0).await;
        assert_eq!(simple(&mut c).await, (0, 5));
        request(&mut c, CMD_TRIM, 6, 0, 4096).await;
        assert_eq!(simple(&mut c).await, (0, 6));
        request(&mut c, CMD_WRITE_ZEROES, 7, 4092, 4).await;
        assert_eq!(simple(&mut c).await, (0, 7));
        request(&mut c, CMD_DISC, 8, 0, 0).await;
        server.await.unwrap().unwrap();
        let mut b = [0u8; 10];
        e.volume.read_at(4090, &mut b).unwrap();
        assert_eq!(
            b,
            [7, 7, 0, 0, 0, 0, 7, 7, 7, 7],
            "write, then zeroes over 4092..4096"
        );
        e.volume.read_at((1 << 20) - 8, &mut b[..8]).unwrap();
        assert_eq!(&b[..8], &[0; 8], "refused write changed nothing");
    }

    /// The fixed-newstyle handshake up to transmission, on the default export.
    async fn go<S: AsyncRead + AsyncWrite + Unpin>(c: &mut S) {
        assert_eq!(c.read_u64().await.unwrap(), NBDMAGIC);
        assert_eq!(c.read_u64().await.unwrap(), IHAVEOPT);
        c.read_u16().await.unwrap();
        c.write_u32(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES)
            .await
            .unwrap();
        opt(c, OPT_GO, &[0u8; 6]).await;
        while read_reply(c).await.1 != REP_ACK {}
    }

    /// An export whose mirror is the returned channel, for a test to play the mirror.
    fn export_to_channel(dir: &std::path::Path) -> (Arc<Export>, mpsc::Receiver<IoRequest>) {
        let volume = Volume::open(&dir.join("v"), Some(1 << 20)).unwrap();
        let (mirror, rx) = mpsc::channel::<IoRequest>(64);
        let e = Arc::new(Export {
            name: String::new(),
            mirror,
            volume,
            inflight: inflight_budget(64 << 20),
            reads_through_mirror: false,
        });
        (e, rx)
    }

    /// A write's payload reaches the mirror as sent; one cut short by the client's hang-up
    /// reaches nothing, and the connection ends with an error.
    #[tokio::test]
    async fn a_payload_reaches_the_mirror_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let (e, mut rx) = export_to_channel(d.path());
        let (mut c, s) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(serve(s, e));
        go(&mut c).await;
        let sent: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
        request(&mut c, CMD_WRITE, 1, 8192, sent.len() as u32).await;
        c.write_all(&sent).await.unwrap();
        match rx.recv().await {
            Some(IoRequest::Write { offset, data, .. }) => {
                assert_eq!(offset, 8192);
                assert!(data == sent, "the payload as sent");
            }
            _ => panic!("no write reached the mirror"),
        }
        request(&mut c, CMD_WRITE, 2, 0, 4096).await;
        c.write_all(&[7; 100]).await.unwrap();
        drop(c);
        assert!(server.await.unwrap().is_err(), "a cut payload is an error");
        assert!(rx.try_recv().is_err(), "and reaches nothing");
    }

    /// Writes pipelined by a client are answered whatever order the mirror confirms them in,
    /// and a write the mirror lets go of unanswered is answered with an I/O error.
    #[tokio::test]
    async fn pipelined_writes_are_answered_and_a_dropped_one_fails() {
        let d = tempfile::tempdir().unwrap();
        let (e, mut rx) = export_to_channel(d.path());
        // The mirror holds 8 writes, then confirms them last to first, dropping the one at 0.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(r) = rx.recv().await {
                if let IoRequest::Write { offset, reply, .. } = r {
                    held.push((offset, reply));
                }
                if held.len() == 8 {
                    while let Some((offset, reply)) = held.pop() {
                        if offset != 0 {
                            reply.send(Ok(())).unwrap();
                        }
                    }
                }
            }
        });
        let (mut c, s) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(serve(s, e));
        go(&mut c).await;
        for k in 0..8u64 {
            request(&mut c, CMD_WRITE, 100 + k, k * 512, 512).await;
            c.write_all(&[k as u8; 512]).await.unwrap();
        }
        let mut got = std::collections::BTreeMap::new();
        for _ in 0..8 {
            let (error, cookie) =
                tokio::time::timeout(std::time::Duration::from_secs(10), simple(&mut c))
                    .await
                    .expect("every write is answered");
            assert!(got.insert(cookie, error).is_none(), "one answer per write");
        }
        let want: std::collections::BTreeMap<u64, u32> = (0..8u64)
            .map(|k| (100 + k, if k == 0 { errno::EIO as u32 } else { 0 }))
            .collect();
        assert_eq!(got, want);
        request(&mut c, CMD_DISC, 9, 0, 0).await;
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn export_name_abort_and_bad_clients() {
        let d = tempfile::tempdir().unwrap();
        let e = export(d.path());
        // EXPORT_NAME without NO_ZEROES: 124 zero bytes follow.
        let (mut c, s) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(serve(s, e.clone()));
        let mut hello = [0u8; 18];
        c.read_exact(&mut hello).await.unwrap();
        c.write_u32(1).await.unwrap();
        opt(&mut c, OPT_EXPORT_NAME, b"vol").await;
        assert_eq!(c.read_u64().await.unwrap(), 1 << 20);
        c.read_u16().await.unwrap();
        let mut z = [1u8; 124];
        c.read_exact(&mut z).await.unwrap();
        assert_eq!(z, [0; 124]);
        drop(c);
        server.await.unwrap().unwrap();
        // ABORT ends the session politely.
        let (mut c, s) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(serve(s, e.clone()));
        c.read_exact(&mut hello).await.unwrap();
        c.write_u32(3).await.unwrap();
        opt(&mut c, OPT_ABORT, b"").await;
        assert_eq!(read_reply(&mut c).await.1, REP_ACK);
        server.await.unwrap().unwrap();
        // An old-style client and a bad request magic are refused with a reason.
        let (mut c, s) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(serve(s, e.clone()));
        c.read_exact(&mut hello).await.unwrap();
        c.write_u32(0).await.unwrap();
        assert!(matches!(
            server.await.unwrap(),
            Err(NbdError::NotFixedNewstyle)
        ));
        let (mut c, s) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(serve(s, e.clone()));
        c.read_exact(&mut hello).await.unwrap();
        c.write_u32(3).await.unwrap();
        opt(&mut c, OPT_GO, &[0, 0, 0, 0, 0, 0]).await;
        for _ in 0..3 {
            read_reply(&mut c).await;
        }
        c.write_all(&[0xee; 28]).await.unwrap();
        assert!(matches!(
            server.await.unwrap(),
            Err(NbdError::BadRequestMagic(_))
        ));
    }
}
