//! What a source's actions ask of the local disk: rollback-log records and local volume writes,
//! in order, each log record reaching the file before the volume write it protects. The one-way
//! source daemon and the bidirectional node daemon both carry out their cores' actions here.

use std::io;
use std::sync::Arc;

use specmirror_core::source::SourceAction;
use tracing::warn;

use crate::logfile::LogFile;
use crate::volume::{errno_of, Volume};

/// A disk operation that finished in the background (a FUA write's sync, a flush's sync).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Background {
    LocalWriteDone(u64, Result<(), i32>),
    LocalSyncDone(u64, Result<(), i32>),
}

/// What became of one action.
#[derive(Debug)]
pub(crate) enum Step {
    Done,
    /// A local write finished at once: the core wants its `LocalWriteDone` now.
    LocalWriteDone {
        seq: u64,
        result: Result<(), i32>,
    },
    /// Not a disk action: the caller's.
    Other(SourceAction),
}

pub(crate) struct Persist {
    pub volume: Volume,
    pub log: LogFile,
    log_sync: bool,
    dirty: bool,
    notify: Arc<dyn Fn(Background) + Send + Sync>,
}

impl Persist {
    /// `notify` hears, from a background thread, when a FUA write or a sync has finished.
    pub fn new(
        volume: Volume,
        log: LogFile,
        log_sync: bool,
        notify: Arc<dyn Fn(Background) + Send + Sync>,
    ) -> Persist {
        Persist {
            volume,
            log,
            log_sync,
            dirty: false,
            notify,
        }
    }

    /// The log records appended so far reach the file (and the disk, with `--log-sync`) before
    /// whatever volume write comes next.
    pub fn barrier(&mut self) -> io::Result<()> {
        if self.dirty {
            if self.log_sync {
                self.log.sync()?;
            } else {
                self.log.flush()?;
            }
        }
        self.dirty = false;
        Ok(())
    }

    /// The end of a batch: its remaining records (grants, confirmations, removals) in one write.
    pub fn flush(&mut self) -> io::Result<()> {
        self.log.flush()
    }

    /// Carries out `a` if it is a disk action. A log write that fails is returned as the error:
    /// mirroring cannot go on safely without its log.
    pub fn source_action(&mut self, a: SourceAction) -> io::Result<Step> {
        match a {
            SourceAction::WriteLocal {
                seq,
                offset,
                data,
                fua,
            } => {
                self.barrier()?;
                let result = self.volume.write_at(offset, &data).map_err(|e| {
                    warn!("local write at {offset} failed: {e}");
                    errno_of(&e)
                });
                let Some(seq) = seq else {
                    return Ok(Step::Done);
                };
                if fua && result.is_ok() {
                    let notify = self.notify.clone();
                    self.volume
                        .sync_in_background(move |r| notify(Background::LocalWriteDone(seq, r)));
                    return Ok(Step::Done);
                }
                Ok(Step::LocalWriteDone { seq, result })
            }
            SourceAction::SyncLocal { flush } => {
                let notify = self.notify.clone();
                self.volume.sync_in_background(move |r| {
                    if let Err(e) = r {
                        warn!("local volume sync failed: errno {e}");
                    }
                    notify(Background::LocalSyncDone(flush, r))
                });
                Ok(Step::Done)
            }
            SourceAction::LogAppend(r) | SourceAction::LogUpdate(r) => {
                self.log.put(&r)?;
                self.dirty = true;
                Ok(Step::Done)
            }
            SourceAction::LogLockGranted { seq } => self.log.lock_granted(seq).map(|_| Step::Done),
            SourceAction::LogDataWritten { seq } => self.log.data_written(seq).map(|_| Step::Done),
            SourceAction::LogRemove { seq } => self.log.remove(seq).map(|_| Step::Done),
            SourceAction::PersistGeneration(g) => {
                self.log.set_generation(g)?;
                self.log.sync()?;
                Ok(Step::Done)
            }
            other => Ok(Step::Other(other)),
        }
    }
}
