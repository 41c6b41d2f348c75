//! Authentication building blocks, free of HTTP: the routes in [`crate::http`] put them
//! together.
//!
//! - [`credentials`]: email normalisation and the password rules.
//! - [`password`]: bcrypt on the blocking pool, a bounded number at a time.
//! - [`jwt`]: short-lived access tokens (HS256).
//! - [`tokens`]: opaque refresh tokens, stored only as their SHA-256.
//! - [`rate_limit`]: sign-in limits per account and per client address.

pub mod credentials;
pub mod jwt;
pub mod password;
pub mod rate_limit;
pub mod tokens;

pub use jwt::{AccessTokens, Claims};
pub use password::PasswordHasher;
pub use rate_limit::SigninLimiter;
