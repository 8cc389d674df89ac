//! Store URLs: `sqlite://PATH`, `postgres://…`, `s3://BUCKET/PREFIX`,
//! `file:///DIR`, `memory://NAME`.
//!
//! ```
//! use audit_core::store::StoreUrl;
//! let url: StoreUrl = "s3://bucket/audit/".parse()?;
//! assert_eq!(url, StoreUrl::S3 { bucket: "bucket".into(), prefix: "audit".into() });
//! let pg: StoreUrl = "postgres://u:secret@h/db".parse()?;
//! assert_eq!(pg.to_string(), "postgres://u:***@h/db");
//! # Ok::<(), audit_core::store::StoreUrlError>(())
//! ```

use std::fmt;
use std::path::PathBuf;

/// A URL that names no store this library knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "store URL {url:?} {why}; use sqlite://PATH, postgres://USER@HOST/DB, s3://BUCKET/PREFIX, file:///DIR or memory://NAME"
)]
pub struct StoreUrlError {
    /// The URL, with any password redacted.
    pub url: String,
    /// What is wrong with it.
    pub why: String,
}

/// A parsed store URL.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `sqlite://PATH`: `sqlite://rel/a.db` is relative, `sqlite:///abs/a.db` absolute.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`: the connection string as given.
    Postgres(String),
    /// `s3://BUCKET/PREFIX`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix inside it, without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// `file:///DIR`: a local folder in the JSONL layout.
    File(PathBuf),
    /// `memory://NAME`: an in-process store, shared by name.
    Memory(String),
}

impl StoreUrl {
    /// Parses `text`, or says which forms are accepted.
    pub fn parse(text: &str) -> Result<Self, StoreUrlError> {
        let bad = |why: &str| StoreUrlError {
            url: redact_url(text),
            why: why.to_owned(),
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
            "memory" => Ok(Self::Memory(rest.to_owned())),
            _ => Err(bad(&format!("has an unknown scheme {scheme:?}"))),
        }
    }

    /// The scheme, e.g. `sqlite://`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite://",
            Self::Postgres(_) => "postgres://",
            Self::S3 { .. } => "s3://",
            Self::File(_) => "file://",
            Self::Memory(_) => "memory://",
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => f.write_str(&redact_url(url)),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::File(path) => write!(f, "file://{}", path.display()),
            Self::Memory(name) => write!(f, "memory://{name}"),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// `url` with every password replaced by `***`: the one in the userinfo
/// (`user:PASSWORD@host`) and any `password=` parameter (`?password=…`,
/// `&password=…`, and the key-value form `password=…`).
pub fn redact_url(url: &str) -> String {
    let mut text = url.to_owned();
    if let Some((scheme, rest)) = text.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                text = format!("{scheme}://{}:***{}", &userinfo[..colon], &rest[at..]);
            }
        }
    }
    redact_parameter(&text, "password")
}

fn redact_parameter(text: &str, name: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let lower = |s: &str| s.to_ascii_lowercase();
    while let Some(found) = lower(rest).find(&format!("{name}=")) {
        let boundary = found == 0
            || matches!(
                rest.as_bytes().get(found - 1),
                Some(b'?' | b'&' | b' ' | b';')
            );
        let value_start = found + name.len() + 1;
        out.push_str(&rest[..value_start]);
        rest = &rest[value_start..];
        if boundary {
            let value_end = rest.find(['&', ' ', ';', '#']).unwrap_or(rest.len());
            out.push_str("***");
            rest = &rest[value_end..];
        }
    }
    out.push_str(rest);
    out
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
        assert_eq!(
            StoreUrl::parse("memory://t").unwrap(),
            StoreUrl::Memory("t".into())
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

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            ("postgres://u:hunter2@h:5/db", "postgres://u:***@h:5/db"),
            (
                "postgres://u@h/db?password=hunter2&sslmode=require",
                "postgres://u@h/db?password=***&sslmode=require",
            ),
            (
                "postgresql://u@h/db?sslmode=require&PASSWORD=hunter2",
                "postgresql://u@h/db?sslmode=require&PASSWORD=***",
            ),
            (
                "host=h password=hunter2 user=u",
                "host=h password=*** user=u",
            ),
        ] {
            assert_eq!(redact_url(url), shown);
            assert!(!redact_url(url).contains("hunter2"));
        }
        let parsed = StoreUrl::parse("postgres://u:hunter2@h/db").unwrap();
        assert!(!format!("{parsed} {parsed:?}").contains("hunter2"));
        let error = StoreUrl::parse("pg://u:hunter2@h/db").unwrap_err();
        assert!(!error.to_string().contains("hunter2"));
    }
}
