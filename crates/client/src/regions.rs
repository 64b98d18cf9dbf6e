//! The part of a regions file (`regions.toml`) a client reads: each
//! region's name and hosts, and the cluster CA of its `[tls]` table. Every
//! other table and key is the hosts' business and is ignored here.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::tls::{ClientTls, TlsError};

#[derive(Debug, Deserialize)]
pub(crate) struct Regions {
    #[serde(rename = "region", default)]
    pub regions: Vec<Region>,
    #[serde(default)]
    tls: Option<Tls>,
    /// The folder the file is in; relative paths start there.
    #[serde(skip)]
    base_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Region {
    pub name: String,
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Tls {
    ca: PathBuf,
}

/// Why a regions file could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegionsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid regions file: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: the [tls] CA: {source}")]
    Tls { path: String, source: TlsError },
}

impl Regions {
    pub(crate) fn load(path: &Path) -> Result<Regions, RegionsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RegionsError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut regions: Regions = toml::from_str(&text).map_err(|e| RegionsError::Parse {
            path: shown.clone(),
            message: e.message().to_owned(),
        })?;
        if regions.regions.iter().all(|r| r.hosts.is_empty()) {
            return Err(RegionsError::Parse {
                path: shown,
                message: "it lists no hosts ([[region]] tables with `hosts = [...]`)".into(),
            });
        }
        regions.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(regions)
    }

    /// TLS settings trusting the file's cluster CA, when it has a `[tls]` table.
    pub(crate) fn client_tls(&self) -> Result<Option<ClientTls>, RegionsError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let ca = self.base_dir.join(&tls.ca);
        ClientTls::from_ca_file(&ca)
            .map(Some)
            .map_err(|source| RegionsError::Tls {
                path: ca.display().to_string(),
                source,
            })
    }
}
