//! The client's one error type, and the one place errors become exit codes.

use reqwest::StatusCode;

/// Everything a client command can fail with. Printed as `error: <message>` on standard
/// error; [`Error::exit_code`] says how the process ends.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asks for something impossible (clap catches the rest).
    #[error("{0}")]
    Usage(String),
    /// No credentials for this server, or they can no longer be refreshed.
    #[error("{0}")]
    NotSignedIn(String),
    /// The server answered with an error status; `message` is its JSON `message`.
    #[error("{message}")]
    Api { status: StatusCode, message: String },
    /// A report this command followed ended failed or cancelled.
    #[error("{0}")]
    ReportEnded(String),
    /// The server could not be reached at all (refused, DNS, timeout, TLS).
    #[error("could not reach the Quire server at {server}: {cause}")]
    Unreachable { server: String, cause: String },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    BadResponse(String),
    /// A local file or terminal operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Exit codes, as the issue fixes them.
pub mod exit {
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_SIGNED_IN: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const REPORT_ENDED: u8 = 5;
}

impl Error {
    /// How the process exits for this error: 2 usage, 3 not signed in or refused (401/403),
    /// 4 not found (404), 5 report failed or cancelled, 1 everything else (422, 429, 5xx,
    /// an unreachable server, local I/O).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => exit::USAGE,
            Self::NotSignedIn(_) => exit::NOT_SIGNED_IN,
            Self::Api { status, .. }
                if *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN =>
            {
                exit::NOT_SIGNED_IN
            }
            Self::Api { status, .. } if *status == StatusCode::NOT_FOUND => exit::NOT_FOUND,
            Self::ReportEnded(_) => exit::REPORT_ENDED,
            Self::Api { .. }
            | Self::Unreachable { .. }
            | Self::BadResponse(_)
            | Self::Io { .. } => exit::OTHER,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The hint every "not signed in" error ends with.
    pub fn not_signed_in(why: impl std::fmt::Display) -> Self {
        Self::NotSignedIn(format!("{why}; run `quire login`"))
    }
}

/// An error and its sources on one line: reqwest's own message rarely says what happened
/// ("error sending request"), its sources do ("Connection refused").
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        current = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_exit_codes() {
        let api = |status| Error::Api {
            status,
            message: String::new(),
        };
        assert_eq!(api(StatusCode::UNAUTHORIZED).exit_code(), 3);
        assert_eq!(api(StatusCode::FORBIDDEN).exit_code(), 3);
        assert_eq!(api(StatusCode::NOT_FOUND).exit_code(), 4);
        assert_eq!(api(StatusCode::CONFLICT).exit_code(), 1);
        assert_eq!(api(StatusCode::UNPROCESSABLE_ENTITY).exit_code(), 1);
        assert_eq!(api(StatusCode::TOO_MANY_REQUESTS).exit_code(), 1);
        assert_eq!(api(StatusCode::INTERNAL_SERVER_ERROR).exit_code(), 1);
        assert_eq!(Error::Usage(String::new()).exit_code(), 2);
        assert_eq!(Error::not_signed_in("x").exit_code(), 3);
        assert_eq!(Error::ReportEnded(String::new()).exit_code(), 5);
    }
}
