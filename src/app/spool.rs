//! Request bodies over a threshold are spooled to files in a temp dir the
//! process owns, created when the first one is; the `cleanup_temp_files`
//! hook removes the dir at exit. A service that never spools never writes
//! to the disk for it: no dir at start, nothing to remove at exit.

use std::io::{self, Seek, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use tempfile::TempDir;

use crate::http::{BodyError, Request};
use crate::sync;

/// A request body, in memory or in a spool file (deleted when dropped).
#[derive(Debug)]
pub(crate) enum SpooledBody {
    /// Small enough for memory.
    Memory(Vec<u8>),
    /// Spooled to a file, rewound to its start.
    File(tempfile::NamedTempFile),
}

impl SpooledBody {
    /// Reads the whole body as JSON.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(self) -> serde_json::Result<T> {
        match self {
            Self::Memory(bytes) => serde_json::from_slice(&bytes),
            Self::File(file) => serde_json::from_reader(io::BufReader::new(file)),
        }
    }
}

/// Why a body could not be read or spooled.
#[derive(Debug)]
pub(crate) enum SpoolError {
    /// Reading the body from the client failed.
    Body(BodyError),
    /// The spool dir or file failed.
    Io(io::Error),
}

/// Where the spool dir is in its life.
#[derive(Debug)]
enum Dir {
    /// No body was spooled yet.
    NotYet,
    Created(TempDir),
    /// Removed by the cleanup hook: nothing is spooled any more.
    Removed,
}

/// The spool dir and the threshold.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: Mutex<Dir>,
    /// Where the dir is created.
    parent: PathBuf,
    threshold: usize,
}

impl Spool {
    /// A spool under the system temp dir (`TMPDIR`); fails unless a file
    /// can be created there (an unnamed one, gone once closed), so that a
    /// temp dir the service cannot write to stops it at start, not at its
    /// first large body.
    pub(crate) fn create(threshold: u64) -> io::Result<Self> {
        let parent = std::env::temp_dir();
        tempfile::tempfile_in(&parent)?;
        log::info!(
            "spooling request bodies over {threshold} bytes to a dir under {}, created when first \
             needed",
            parent.display()
        );
        Ok(Self {
            dir: Mutex::new(Dir::NotYet),
            parent,
            threshold: usize::try_from(threshold).unwrap_or(usize::MAX),
        })
    }

    /// A new spool file, in the spool dir (created if it is not yet). The
    /// lock is held to create the dir, not the file.
    fn new_file(&self) -> io::Result<tempfile::NamedTempFile> {
        let mut dir = sync::lock(&self.dir);
        let path = match &*dir {
            Dir::Created(created) => created.path().to_path_buf(),
            Dir::Removed => {
                return Err(io::Error::other(
                    "the spool dir was removed: the service is shutting down",
                ));
            }
            Dir::NotYet => {
                let created = tempfile::Builder::new()
                    .prefix("gremlins-api-spool-")
                    .tempdir_in(&self.parent)?;
                log::info!("created the spool dir {}", created.path().display());
                let path = created.path().to_path_buf();
                *dir = Dir::Created(created);
                path
            }
        };
        drop(dir);
        tempfile::NamedTempFile::new_in(path)
    }

    /// Reads the request body: into memory up to the threshold, into a
    /// spool file beyond it.
    pub(crate) fn read_body(&self, request: &mut Request<'_>) -> Result<SpooledBody, SpoolError> {
        let mut memory = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let count = request.read_body(&mut chunk).map_err(SpoolError::Body)?;
            if count == 0 {
                return Ok(SpooledBody::Memory(memory));
            }
            memory.extend_from_slice(&chunk[..count]);
            if memory.len() > self.threshold {
                break;
            }
        }
        let mut file = self.new_file().map_err(SpoolError::Io)?;
        file.write_all(&memory).map_err(SpoolError::Io)?;
        loop {
            let count = request.read_body(&mut chunk).map_err(SpoolError::Body)?;
            if count == 0 {
                break;
            }
            file.write_all(&chunk[..count]).map_err(SpoolError::Io)?;
        }
        file.rewind().map_err(SpoolError::Io)?;
        Ok(SpooledBody::File(file))
    }

    /// Removes the spool dir, if one was created, and whatever is left in
    /// it (the `cleanup_temp_files` hook).
    pub(crate) fn remove(&self) -> io::Result<()> {
        let dir = std::mem::replace(&mut *sync::lock(&self.dir), Dir::Removed);
        match dir {
            Dir::Created(dir) => {
                let shown = dir.path().display().to_string();
                dir.close()?;
                log::info!("removed the spool dir {shown}");
                Ok(())
            }
            Dir::NotYet | Dir::Removed => Ok(()),
        }
    }
}
