//! Stores are named by URL: `sqlite://PATH`, `postgres://…`,
//! `s3://BUCKET/PREFIX`, `file:///DIR`, `memory://NAME`. Parsing and
//! opening live in the library ([`deferred_audit::open`]); every command
//! takes one code path for every backend.

pub use deferred_audit::StoreUrl;

/// The store URLs and their environment, for `--help`.
pub const URLS_HELP: &str = "\
Store URLs:
  sqlite://PATH            a SQLite file (sqlite:///abs/path for an absolute one)
  postgres://USER:PASSWORD@HOST:PORT/DB
                           a PostgreSQL database (postgresql:// too)
  s3://BUCKET/PREFIX       a JSONL archive in S3 or an S3-compatible server
  file:///DIR              a JSONL archive in a local folder
  memory://NAME            an in-process store (for trying things out)

s3:// URLs read the usual AWS environment variables:
  AWS_ENDPOINT_URL         the server, e.g. http://127.0.0.1:9000 (unset: AWS)
  AWS_REGION               e.g. us-east-1 (or AWS_DEFAULT_REGION)
  AWS_ACCESS_KEY_ID        the access key (unset: instance or container credentials)
  AWS_SECRET_ACCESS_KEY    its secret (and AWS_SESSION_TOKEN when temporary)
  AWS_ALLOW_HTTP=true      allow a plain-HTTP endpoint
  AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true
                           bucket in the host name (default: path-style)

Logging: DEFERRED_AUDIT_LOG sets the log filter on stderr (default: error),
  e.g. DEFERRED_AUDIT_LOG=info or DEFERRED_AUDIT_LOG=audit_core=debug.

Exit codes: 0 every check holds, 1 a verification failed, 2 usage or I/O error.";
