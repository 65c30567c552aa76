//! Request bodies over a threshold are spooled to files in a temp dir the
//! process owns; the `cleanup_temp_files` hook removes the dir at exit.

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

/// The spool dir and the threshold.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: Mutex<Option<TempDir>>,
    path: PathBuf,
    threshold: usize,
}

impl Spool {
    /// Creates the spool dir under the system temp dir (`TMPDIR`).
    pub(crate) fn create(threshold: u64) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("gremlins-api-spool-")
            .tempdir()?;
        let path = dir.path().to_path_buf();
        log::info!(
            "spooling request bodies over {threshold} bytes to {}",
            path.display()
        );
        Ok(Self {
            dir: Mutex::new(Some(dir)),
            path,
            threshold: usize::try_from(threshold).unwrap_or(usize::MAX),
        })
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
        let mut file = tempfile::NamedTempFile::new_in(&self.path).map_err(SpoolError::Io)?;
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

    /// Removes the spool dir and whatever is left in it (the
    /// `cleanup_temp_files` hook).
    pub(crate) fn remove(&self) -> io::Result<()> {
        let dir = sync::lock(&self.dir).take();
        match dir {
            Some(dir) => {
                dir.close()?;
                log::info!("removed the spool dir {}", self.path.display());
                Ok(())
            }
            None => Ok(()),
        }
    }
}
