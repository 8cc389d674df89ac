//! Stores are named by URL: `sqlite://PATH`, `postgres://…`,
//! `s3://BUCKET/PREFIX`, `file:///DIR`.
//!
//! Commands dispatch on [`StoreUrl`]; a backend this build does not serve
//! yet answers with [`StoreUrl::unsupported`], so adding one is one match
//! arm per command.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use crate::error::CliError;

/// The store URLs and their environment, for `--help`.
pub const URLS_HELP: &str = "\
Store URLs:
  sqlite://PATH            a SQLite file (sqlite:///abs/path for an absolute one)
  postgres://USER:PASSWORD@HOST:PORT/DB
                           a PostgreSQL database (postgresql:// too)
  s3://BUCKET/PREFIX       a JSONL archive in S3 or an S3-compatible server
  file:///DIR              a JSONL archive in a local folder

s3:// URLs read the usual AWS environment variables:
  AWS_ENDPOINT_URL         the server, e.g. http://127.0.0.1:9000 (unset: AWS)
  AWS_REGION               e.g. us-east-1 (or AWS_DEFAULT_REGION)
  AWS_ACCESS_KEY_ID        the access key (unset: instance or container credentials)
  AWS_SECRET_ACCESS_KEY    its secret (and AWS_SESSION_TOKEN when temporary)
  AWS_ALLOW_HTTP=true      allow a plain-HTTP endpoint
  AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true
                           bucket in the host name (default: path-style)

Exit codes: 0 every check holds, 1 a verification failed, 2 usage or I/O error.";

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH`: a SQLite file; `sqlite://rel/a.db` is relative,
    /// `sqlite:///abs/a.db` absolute.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`: a PostgreSQL connection string.
    Postgres(String),
    /// `s3://BUCKET/PREFIX`: an object-store prefix.
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix inside it (may be empty).
        prefix: String,
    },
    /// `file:///DIR`: a local folder in the JSONL layout (FORMAT.md section 7).
    File(PathBuf),
}

impl StoreUrl {
    /// Parses `text`, or says which forms are accepted.
    pub fn parse(text: &str) -> Result<Self, CliError> {
        let bad = |why: &str| {
            CliError::usage(format!(
                "store URL {text:?} {why}; use sqlite://PATH, postgres://USER@HOST/DB, s3://BUCKET/PREFIX or file:///DIR"
            ))
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("has no scheme"))?;
        match scheme {
            "sqlite" if !rest.is_empty() => Ok(Self::Sqlite(PathBuf::from(rest))),
            "sqlite" => Err(bad("names no file")),
            "postgres" | "postgresql" => Ok(Self::Postgres(text.to_owned())),
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("names no bucket"));
                }
                Ok(Self::S3 {
                    bucket: bucket.to_owned(),
                    prefix: prefix.trim_matches('/').to_owned(),
                })
            }
            "file" if !rest.is_empty() => Ok(Self::File(PathBuf::from(rest))),
            "file" => Err(bad("names no folder")),
            _ => Err(bad(&format!("has an unknown scheme {scheme:?}"))),
        }
    }

    /// The error for a store this build (or this command) does not serve.
    pub fn unsupported(&self, command: &str) -> CliError {
        let scheme = match self {
            Self::Sqlite(_) => "sqlite://",
            Self::Postgres(_) => "postgres://",
            Self::S3 { .. } => "s3://",
            Self::File(_) => "file://",
        };
        CliError::usage(format!(
            "`{command}` does not support {scheme} stores in this build yet ({self}); use a sqlite://PATH store"
        ))
    }
}

/// Whether an object-store URL is read (its folder must exist) or written
/// (a missing folder is created).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read an existing archive.
    Read,
    /// Write into it, creating a missing folder.
    Write,
}

impl StoreUrl {
    /// The object store and prefix of an `s3://` or `file://` URL (the JSONL
    /// layout of FORMAT.md section 7), for `command`.
    pub fn object_store(
        &self,
        access: Access,
        command: &str,
    ) -> Result<(Arc<dyn ObjectStore>, ObjectPath), CliError> {
        let url = match self {
            Self::S3 { .. } => self.to_string(),
            Self::File(dir) => {
                if access == Access::Read && !dir.is_dir() {
                    return Err(CliError::usage(format!(
                        "{} is not a folder; give file:///DIR of a folder in the JSONL layout",
                        dir.display()
                    )));
                }
                let absolute = std::path::absolute(dir).map_err(|error| {
                    CliError::usage(format!("resolving {}: {error}", dir.display()))
                })?;
                format!("file://{}", absolute.display())
            }
            other => return Err(other.unsupported(command)),
        };
        Ok(audit_s3_jsonl::url::open_store_url(&url)?)
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => f.write_str(url),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = CliError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses() {
        assert_eq!(
            StoreUrl::parse("sqlite://demo-data/audit.db").unwrap(),
            StoreUrl::Sqlite("demo-data/audit.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///var/audit.db").unwrap(),
            StoreUrl::Sqlite("/var/audit.db".into())
        );
        assert_eq!(
            StoreUrl::parse("postgres://u@h/db").unwrap(),
            StoreUrl::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            StoreUrl::parse("s3://bucket/a/b/").unwrap(),
            StoreUrl::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("file:///tmp/x").unwrap(),
            StoreUrl::File("/tmp/x".into())
        );
    }

    #[test]
    fn bad_urls_say_what_is_accepted() {
        for bad in ["audit.db", "sqlite://", "s3:///x", "ftp://x", "file://"] {
            let message = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(
                message.contains(bad) && message.contains("sqlite://PATH"),
                "{message}"
            );
        }
    }
}
