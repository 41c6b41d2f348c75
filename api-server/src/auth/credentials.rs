//! What an acceptable email and password look like.

use email_address::{EmailAddress, Options};

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in bytes: bcrypt ignores everything after the 72nd byte.
pub const MAX_PASSWORD_BYTES: usize = 72;
/// Longest accepted email address (RFC 5321 path limit).
const MAX_EMAIL_BYTES: usize = 254;

/// The form emails are stored and looked up in: trimmed and lower-cased, so
/// `" Ada@Example.com"` and `"ada@example.com"` are one account.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Checks a normalised email for sign-up. The message is safe to show the client.
pub fn check_email(email: &str) -> Result<(), String> {
    let options = Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
    };
    if email.len() > MAX_EMAIL_BYTES || EmailAddress::parse_with_options(email, options).is_err() {
        return Err("`email` must be a valid email address such as ada@example.com".to_owned());
    }
    Ok(())
}

/// Checks a password for sign-up. The message never contains the password.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "`password` must be at least {MIN_PASSWORD_CHARS} characters long"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "`password` must be at most {MAX_PASSWORD_BYTES} bytes long"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(normalize_email("  Ada@Example.COM\n"), "ada@example.com");
    }

    #[test]
    fn only_plain_addresses_with_a_domain_are_accepted() {
        assert!(check_email("ada@example.com").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@localhost",
            "Ada <ada@example.com>",
            "a@[127.0.0.1]",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn passwords_are_between_8_characters_and_72_bytes() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"x".repeat(72)).is_ok());
        assert!(check_password(&"x".repeat(73)).is_err());
        // 8 characters but 24 bytes: long enough, and within bcrypt's limit.
        assert!(check_password("éééééééé").is_ok());
        // 25 characters, 75 bytes: over bcrypt's limit.
        assert!(check_password(&"€".repeat(25)).is_err());
    }
}
