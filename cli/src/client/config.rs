//! Where the client keeps its session: `credentials.json` in the config directory
//! (`QUIRE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/quire`, else `$HOME/.config/quire`).
//!
//! The file holds bearer tokens, so the directory is created 0700 and the file is always
//! written 0600, in full to a temporary file in the same directory and then renamed: a
//! crash or a full disk never leaves a truncated file, and no other user can ever read it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::Error;

const CREDENTIALS: &str = "credentials.json";
/// Held (an advisory lock) while a refresh is in flight, so two `quire` processes sharing the
/// file do not both spend the same refresh token: the server treats a reused refresh token
/// as stolen and revokes the whole sign-in.
const LOCK: &str = "credentials.lock";

/// How long before the access token's expiry it is refreshed: a request sent just before
/// the deadline should not arrive just after it.
pub const REFRESH_MARGIN: chrono::Duration = chrono::Duration::seconds(30);

/// A session with one server, as stored in `credentials.json`.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// The server that issued the tokens (normalised, no trailing slash): they are only
    /// ever sent back to it.
    pub server: String,
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
    /// When the access token expires (from the sign-in's `expires_in`).
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Credentials {
    /// Never the tokens: a debug print must not leak a session.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("email", &self.email)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The token pair `POST /auth/signin` and `POST /auth/refresh` answer with.
#[derive(Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

impl Credentials {
    pub fn new(server: &str, email: &str, pair: TokenPair, now: DateTime<Utc>) -> Self {
        let lifetime = i64::try_from(pair.expires_in).unwrap_or(i64::MAX);
        Self {
            server: server.to_owned(),
            email: email.to_owned(),
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            expires_at: now
                .checked_add_signed(chrono::Duration::seconds(lifetime))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// True while the access token is good for at least [`REFRESH_MARGIN`] more.
    pub fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        now + REFRESH_MARGIN < self.expires_at
    }
}

/// The config directory and the credentials file in it.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    dir: PathBuf,
}

impl CredentialStore {
    /// The config directory from the environment: `QUIRE_CONFIG_DIR`, else
    /// `$XDG_CONFIG_HOME/quire` (when set to an absolute path, as the XDG spec asks), else
    /// `$HOME/.config/quire`.
    pub fn from_env() -> Result<Self, Error> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = if let Some(dir) = var("QUIRE_CONFIG_DIR") {
            PathBuf::from(dir)
        } else if let Some(xdg) = var("XDG_CONFIG_HOME").filter(|d| Path::new(d).is_absolute()) {
            PathBuf::from(xdg).join("quire")
        } else if let Some(home) = var("HOME") {
            PathBuf::from(home).join(".config").join("quire")
        } else {
            return Err(Error::Usage(
                "no config directory: set QUIRE_CONFIG_DIR, XDG_CONFIG_HOME or HOME".to_owned(),
            ));
        };
        Ok(Self { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(CREDENTIALS)
    }

    /// The stored session, if any.
    pub fn load(&self) -> Result<Option<Credentials>, Error> {
        let path = self.path();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_slice(&text).map(Some).map_err(|e| {
            Error::not_signed_in(format!(
                "{} is not a credentials file this client wrote ({e})",
                path.display()
            ))
        })
    }

    /// Replaces the stored session: 0600, atomically (temporary file + rename).
    pub fn save(&self, credentials: &Credentials) -> Result<(), Error> {
        self.create_dir()?;
        let path = self.path();
        let failed = |e| Error::io(format!("writing {}", path.display()), e);
        // `tempfile` creates the file 0600 and removes it if anything below fails.
        let mut file = tempfile::Builder::new()
            .prefix(".credentials")
            .suffix(".tmp")
            .tempfile_in(&self.dir)
            .map_err(failed)?;
        let json = serde_json::to_vec_pretty(credentials)
            .map_err(|e| Error::io("encoding the credentials", e.into()))?;
        file.write_all(&json).map_err(failed)?;
        file.as_file().sync_all().map_err(failed)?;
        set_owner_only(file.path(), 0o600).map_err(failed)?;
        file.persist(&path).map_err(|e| failed(e.error))?;
        Ok(())
    }

    /// Forgets the stored session; false when there was none.
    pub fn remove(&self) -> Result<bool, Error> {
        let path = self.path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }

    /// An exclusive lock on the credentials, held until the returned file is dropped.
    pub fn lock(&self) -> Result<File, Error> {
        self.create_dir()?;
        let path = self.dir.join(LOCK);
        let failed = |e| Error::io(format!("locking {}", path.display()), e);
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(failed)?;
        file.lock().map_err(failed)?;
        Ok(file)
    }

    /// The config directory, 0700 when this creates it (an existing one is left alone:
    /// it is the user's).
    fn create_dir(&self) -> Result<(), Error> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&self.dir)
            .map_err(|e| Error::io(format!("creating {}", self.dir.display()), e))
    }
}

#[cfg(unix)]
fn set_owner_only(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_owner_only(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(expires_in: u64) -> Credentials {
        let pair = TokenPair {
            access_token: "access-secret".into(),
            refresh_token: "refresh-secret".into(),
            expires_in,
        };
        Credentials::new("http://x", "a@example.com", pair, Utc::now())
    }

    #[test]
    fn saved_credentials_load_back_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore {
            dir: dir.path().join("quire"),
        };
        assert!(store.load().unwrap().is_none());
        store.save(&credentials(900)).unwrap();
        let loaded = store.load().unwrap().unwrap();
        assert_eq!(loaded.refresh_token, "refresh-secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&store.path()), 0o600);
            assert_eq!(mode(&store.dir), 0o700);
        }
        let leftovers = std::fs::read_dir(&store.dir).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
        assert!(store.remove().unwrap());
        assert!(!store.remove().unwrap());
    }

    #[test]
    fn the_debug_form_hides_the_tokens() {
        let shown = format!("{:?}", credentials(900));
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn tokens_are_refreshed_a_margin_before_they_expire() {
        assert!(credentials(900).is_fresh(Utc::now()));
        assert!(!credentials(10).is_fresh(Utc::now()));
    }
}
