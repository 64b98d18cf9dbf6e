//! Caller authentication: bearer tokens, and the access file that says which
//! functions each token may call.

pub mod access;

pub use access::{Access, AccessError, Grant, digest, new_token};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

/// A host's access file as it is now: reloaded when the file changes.
/// Connections follow it ([`AccessFile::subscribe`]): a token removed from the
/// file closes the connections that authenticated with it, and changed
/// patterns apply to their next call.
pub struct AccessFile {
    path: PathBuf,
    current: watch::Sender<Arc<Access>>,
}

impl std::fmt::Debug for AccessFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AccessFile {
    /// Reads the file.
    ///
    /// # Errors
    ///
    /// As [`Access::from_file`].
    pub fn load(path: &Path) -> Result<AccessFile, AccessError> {
        let access = Access::from_file(path)?;
        Ok(AccessFile {
            path: path.to_owned(),
            current: watch::Sender::new(Arc::new(access)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens accepted now.
    pub fn current(&self) -> Arc<Access> {
        self.current.borrow().clone()
    }

    /// Every future version of the file.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Access>> {
        self.current.subscribe()
    }

    /// Reads the file again; on success it applies at once (new connections,
    /// and every open one's next call). On failure nothing changes.
    ///
    /// # Errors
    ///
    /// As [`Access::from_file`].
    pub fn reload(&self) -> Result<usize, AccessError> {
        let access = Access::from_file(&self.path)?;
        let tokens = access.len();
        self.current.send_replace(Arc::new(access));
        Ok(tokens)
    }
}
