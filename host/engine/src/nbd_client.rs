//! A small NBD client (fixed newstyle, GO, simple replies) with pipelined requests: what the demo
//! and the benchmarks drive the source with, at any queue depth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("not an NBD server, or an unexpected handshake: {0}")]
    Handshake(String),
    #[error("server answered errno {0}")]
    Errno(u32),
    #[error("connection lost")]
    Lost,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

type Waiters = Arc<Mutex<HashMap<u64, (oneshot::Sender<(u32, Vec<u8>)>, usize)>>>;

/// A connected client; cheap to share between tasks (`Arc`).
pub struct NbdClient {
    w: tokio::sync::Mutex<OwnedWriteHalf>,
    waiters: Waiters,
    next: std::sync::atomic::AtomicU64,
    pub size: u64,
}

impl NbdClient {
    /// Connects and opens the default export (the empty name).
    pub async fn connect(addr: &str) -> Result<Arc<NbdClient>, ClientError> {
        Self::connect_export(addr, "").await
    }

    /// Connects and opens the export called `name`.
    pub async fn connect_export(addr: &str, name: &str) -> Result<Arc<NbdClient>, ClientError> {
        let mut s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let magic = s.read_u64().await?;
        let opt = s.read_u64().await?;
        if magic != 0x4e42_444d_4147_4943 || opt != 0x4948_4156_454f_5054 {
            return Err(ClientError::Handshake("bad greeting".into()));
        }
        let _flags = s.read_u16().await?;
        s.write_u32(3).await?; // fixed newstyle, no zeroes
        let mut go = Vec::new();
        go.extend_from_slice(&0x4948_4156_454f_5054u64.to_be_bytes());
        go.extend_from_slice(&7u32.to_be_bytes());
        go.extend_from_slice(&(6 + name.len() as u32).to_be_bytes());
        go.extend_from_slice(&(name.len() as u32).to_be_bytes());
        go.extend_from_slice(name.as_bytes());
        go.extend_from_slice(&[0, 0]);
        s.write_all(&go).await?;
        let mut size = None;
        loop {
            let _magic = s.read_u64().await?;
            let _opt = s.read_u32().await?;
            let ty = s.read_u32().await?;
            let len = s.read_u32().await? as usize;
            let mut d = vec![0u8; len];
            s.read_exact(&mut d).await?;
            match ty {
                1 => break,
                3 if d.len() >= 12 && d[0..2] == [0, 0] => {
                    size = Some(u64::from_be_bytes(d[2..10].try_into().expect("8")));
                }
                3 => {}
                t => return Err(ClientError::Handshake(format!("option reply {t:#x}"))),
            }
        }
        let size = size.ok_or_else(|| ClientError::Handshake("no export size".into()))?;
        let (mut r, w) = s.into_split();
        let waiters: Waiters = Arc::default();
        let wt = waiters.clone();
        tokio::spawn(async move {
            loop {
                let mut h = [0u8; 16];
                if r.read_exact(&mut h).await.is_err() {
                    break;
                }
                let err = u32::from_be_bytes(h[4..8].try_into().expect("4"));
                let cookie = u64::from_be_bytes(h[8..16].try_into().expect("8"));
                let Some((tx, read_len)) = wt.lock().expect("lock").remove(&cookie) else {
                    break;
                };
                let mut data = vec![0u8; if err == 0 { read_len } else { 0 }];
                if r.read_exact(&mut data).await.is_err() {
                    break;
                }
                tx.send((err, data)).ok();
            }
            wt.lock().expect("lock").clear();
        });
        Ok(Arc::new(NbdClient {
            w: tokio::sync::Mutex::new(w),
            waiters,
            next: 1.into(),
            size,
        }))
    }

    async fn request(
        &self,
        ty: u16,
        flags: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
        read_len: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let cookie = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .expect("lock")
            .insert(cookie, (tx, read_len));
        let mut b = Vec::with_capacity(28 + payload.len());
        b.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&ty.to_be_bytes());
        b.extend_from_slice(&cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(payload);
        self.w.lock().await.write_all(&b).await?;
        let (err, data) = rx.await.map_err(|_| ClientError::Lost)?;
        if err != 0 {
            return Err(ClientError::Errno(err));
        }
        Ok(data)
    }

    pub async fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), ClientError> {
        self.request(1, fua as u16, offset, data.len() as u32, data, 0)
            .await
            .map(|_| ())
    }

    pub async fn read(&self, offset: u64, len: u32) -> Result<Vec<u8>, ClientError> {
        self.request(0, 0, offset, len, &[], len as usize).await
    }

    pub async fn flush(&self) -> Result<(), ClientError> {
        self.request(3, 0, 0, 0, &[], 0).await.map(|_| ())
    }
}
