//! The store's errors and how each reaches a client: S3's refusals as themselves, and every
//! failure of the machine under it (disk, descriptors, database) as a 5xx a client retries:
//! `503 SlowDown` when the store is short of a resource, `500 InternalError` otherwise.
//! Never a 404 for an object that exists.

use std::io;

use s3s::{S3Error, S3ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// S3's own answer to this request (NoSuchKey, PreconditionFailed, ...).
    #[error("{0}")]
    Refused(S3Error),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("a store task failed: {0}")]
    Task(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }
}

/// An S3 refusal with S3's code and message.
pub fn refuse(code: S3ErrorCode, message: impl Into<String>) -> StoreError {
    StoreError::Refused(S3Error::with_message(code, message.into()))
}

/// A refusal with a code s3s does not know, and its status.
pub fn refuse_custom(code: &'static str, status: http::StatusCode, message: impl Into<String>) -> StoreError {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), message.into());
    e.set_status_code(status);
    StoreError::Refused(e)
}

impl From<S3Error> for StoreError {
    fn from(e: S3Error) -> Self {
        StoreError::Refused(e)
    }
}

/// True for errors that mean "out of a resource for now": descriptors, memory, a busy database.
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc_emfile) if libc_emfile == 24 || libc_emfile == 23 || libc_emfile == 12)
        || e.kind() == io::ErrorKind::OutOfMemory
}

impl From<StoreError> for S3Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(e) => e,
            StoreError::Io { ref source, .. } if is_exhaustion(source) => {
                tracing::warn!(error = %e, "embedded store short of a resource: answering 503 SlowDown");
                S3Error::with_message(S3ErrorCode::SlowDown, "Please reduce your request rate.")
            }
            StoreError::Db(rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::CannotOpen
                ) =>
            {
                tracing::warn!(error = %e, "embedded store database busy: answering 503 SlowDown");
                S3Error::with_message(S3ErrorCode::SlowDown, "Please reduce your request rate.")
            }
            other => {
                tracing::error!(error = %other, "embedded store failure: answering 500 InternalError");
                S3Error::with_message(
                    S3ErrorCode::InternalError,
                    "We encountered an internal error. Please try again.",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_is_a_503_and_other_io_a_500_never_a_404() {
        let emfile = StoreError::Io {
            context: "opening an object".into(),
            source: io::Error::from_raw_os_error(24),
        };
        assert_eq!(*S3Error::from(emfile).code(), S3ErrorCode::SlowDown);
        let gone = StoreError::Io {
            context: "opening an object".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(*S3Error::from(gone).code(), S3ErrorCode::InternalError);
    }
}
