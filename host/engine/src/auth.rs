//! Mutual authentication before any frame moves: an HMAC-SHA256 challenge and response in each
//! direction, with fresh random nonces from both ends, so a recorded handshake cannot be replayed
//! and neither side talks to a peer that does not hold the shared secret.
//!
//! Both ends always exchange the preamble, so a pair where only one side has a secret fails with a
//! message that says so rather than with a confusing protocol error.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const MAGIC: &[u8; 8] = b"SMAUTH01";
const NONE: u8 = 0;
const HMAC_SHA256: u8 = 1;
const OK: u8 = 0;
const REFUSED: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("peer is not a specmirror node (bad authentication preamble)")]
    NotSpecmirror,
    #[error("peer has no secret, but this node requires --secret-file")]
    PeerHasNoSecret,
    #[error("peer requires a secret, but this node has no --secret-file")]
    WeHaveNoSecret,
    #[error("peer failed authentication: wrong secret or a replayed handshake")]
    BadProof,
    #[error("peer refused our authentication")]
    Refused,
    #[error("peer did not complete authentication within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn mac(secret: &[u8], role: &[u8], a: &[u8], b: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(role);
    m.update(a);
    m.update(b);
    m
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::getrandom(&mut n).expect("the OS random source works");
    n
}

async fn read_msg<S: AsyncRead + Unpin>(s: &mut S, buf: &mut [u8]) -> Result<(), AuthError> {
    s.read_exact(buf).await?;
    if &buf[..8] != MAGIC {
        return Err(AuthError::NotSpecmirror);
    }
    Ok(())
}

/// The target's side: challenge, check the proof, prove itself.
pub async fn as_target<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    secret: Option<&[u8]>,
    within: Duration,
) -> Result<(), AuthError> {
    tokio::time::timeout(within, async {
        let nt = nonce();
        let mut m = [0u8; 48];
        m[..8].copy_from_slice(MAGIC);
        m[8] = if secret.is_some() { HMAC_SHA256 } else { NONE };
        m[16..48].copy_from_slice(&nt);
        s.write_all(&m).await?;
        let mut r = [0u8; 80];
        read_msg(s, &mut r).await?;
        let (mode, ns, proof) = (r[8], &r[16..48], &r[48..80]);
        let mut v = [0u8; 48];
        v[..8].copy_from_slice(MAGIC);
        let verdict = match (secret, mode) {
            (None, _) => Ok(()),
            (Some(_), NONE) => Err(AuthError::PeerHasNoSecret),
            (Some(k), _) => mac(k, b"specmirror-source", &nt, ns)
                .verify_slice(proof)
                .map_err(|_| AuthError::BadProof),
        };
        v[8] = if verdict.is_ok() { OK } else { REFUSED };
        if let (Some(k), Ok(())) = (secret, &verdict) {
            let t = mac(k, b"specmirror-target", ns, &nt)
                .finalize()
                .into_bytes();
            v[16..48].copy_from_slice(&t);
        }
        s.write_all(&v).await?;
        s.flush().await?;
        verdict
    })
    .await
    .map_err(|_| AuthError::Timeout(within))?
}

/// The source's side: answer the challenge, check the target's proof.
pub async fn as_source<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    secret: Option<&[u8]>,
    within: Duration,
) -> Result<(), AuthError> {
    tokio::time::timeout(within, async {
        let mut c = [0u8; 48];
        read_msg(s, &mut c).await?;
        let (mode, nt) = (c[8], &c[16..48]);
        match (secret, mode) {
            (Some(_), NONE) => return Err(AuthError::PeerHasNoSecret),
            (None, HMAC_SHA256) => {
                // Answer without a proof so the target logs why, then give up.
                let mut r = [0u8; 80];
                r[..8].copy_from_slice(MAGIC);
                s.write_all(&r).await?;
                return Err(AuthError::WeHaveNoSecret);
            }
            _ => {}
        }
        let ns = nonce();
        let mut r = [0u8; 80];
        r[..8].copy_from_slice(MAGIC);
        r[16..48].copy_from_slice(&ns);
        if let Some(k) = secret {
            r[8] = HMAC_SHA256;
            let p = mac(k, b"specmirror-source", nt, &ns)
                .finalize()
                .into_bytes();
            r[48..80].copy_from_slice(&p);
        }
        s.write_all(&r).await?;
        s.flush().await?;
        let mut v = [0u8; 48];
        read_msg(s, &mut v).await?;
        if v[8] != OK {
            return Err(AuthError::Refused);
        }
        if let Some(k) = secret {
            mac(k, b"specmirror-target", &ns, nt)
                .verify_slice(&v[16..48])
                .map_err(|_| AuthError::BadProof)?;
        }
        Ok(())
    })
    .await
    .map_err(|_| AuthError::Timeout(within))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    async fn pair(
        src: Option<&[u8]>,
        tgt: Option<&[u8]>,
    ) -> (Result<(), AuthError>, Result<(), AuthError>) {
        pair_within(src, tgt, T).await
    }

    async fn pair_within(
        src: Option<&[u8]>,
        tgt: Option<&[u8]>,
        within: Duration,
    ) -> (Result<(), AuthError>, Result<(), AuthError>) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        tokio::join!(
            as_source(&mut a, src, within),
            as_target(&mut b, tgt, within)
        )
    }

    #[tokio::test]
    async fn matching_secrets_authenticate_both_ways() {
        let (s, t) = pair(Some(b"k1"), Some(b"k1")).await;
        s.unwrap();
        t.unwrap();
        let (s, t) = pair(None, None).await;
        s.unwrap();
        t.unwrap();
    }

    #[tokio::test]
    async fn a_wrong_or_missing_secret_is_refused_with_the_reason() {
        let (s, t) = pair(Some(b"k1"), Some(b"k2")).await;
        assert!(matches!(t, Err(AuthError::BadProof)));
        assert!(matches!(s, Err(AuthError::Refused)));
        let (s, t) = pair(None, Some(b"k2")).await;
        assert!(matches!(s, Err(AuthError::WeHaveNoSecret)));
        assert!(matches!(t, Err(AuthError::PeerHasNoSecret)));
        let (s, _) = pair_within(Some(b"k1"), None, Duration::from_millis(300)).await;
        assert!(matches!(s, Err(AuthError::PeerHasNoSecret)));
    }

    #[tokio::test]
    async fn a_replayed_response_fails() {
        // Record a good source response to one challenge...
        let (mut a, mut b) = tokio::io::duplex(4096);
        let (s, t) = tokio::join!(as_source(&mut a, Some(b"k"), T), async {
            let mut c = [0u8; 48];
            c[..8].copy_from_slice(MAGIC);
            c[8] = HMAC_SHA256;
            c[16..48].copy_from_slice(&[7u8; 32]);
            b.write_all(&c).await.unwrap();
            let mut r = [0u8; 80];
            b.read_exact(&mut r).await.unwrap();
            let mut v = [0u8; 48];
            v[..8].copy_from_slice(MAGIC);
            v[8] = REFUSED;
            b.write_all(&v).await.unwrap();
            r
        });
        assert!(s.is_err());
        let recorded = t;
        // ...and play it against a real target, which picks a fresh nonce.
        let (mut a, mut b) = tokio::io::duplex(4096);
        let (_, t) = tokio::join!(
            async {
                let mut c = [0u8; 48];
                a.read_exact(&mut c).await.unwrap();
                a.write_all(&recorded).await.unwrap();
                let mut v = [0u8; 48];
                a.read_exact(&mut v).await.unwrap();
            },
            as_target(&mut b, Some(b"k"), T)
        );
        assert!(matches!(t, Err(AuthError::BadProof)));
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (_a, mut b) = tokio::io::duplex(4096);
        let r = as_target(&mut b, Some(b"k"), Duration::from_millis(50)).await;
        assert!(matches!(r, Err(AuthError::Timeout(_))));
    }
}
