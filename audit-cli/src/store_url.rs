//! Stores are named by URL: `sqlite://PATH`, `postgres://…`,
//! `s3://BUCKET/PREFIX`, `file:///DIR`.
//!
//! Commands dispatch on [`StoreUrl`]; a backend this build does not serve
//! yet answers with [`StoreUrl::unsupported`], so adding one is one match
//! arm per command.

use std::fmt;
use std::path::PathBuf;

use crate::error::CliError;

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
