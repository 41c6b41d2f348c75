//! What an acceptable email and password look like.
//!
//! # One person, one account
//!
//! An email address is stored and looked up in one normal form, so that spellings a person
//! cannot tell apart never become separate accounts ([`normalize_email`]):
//!
//! - the whole address is trimmed and NFKC-normalised, which folds compatibility forms
//!   such as fullwidth letters (`ｋａｄａ＠example.com`) into their plain ASCII letters;
//! - the domain (after the last `@`) goes through IDNA UTS #46 mapping: lower-cased and, for
//!   an internationalised domain, stored in its ASCII (punycode) form;
//! - the local part (before it) is lower-cased and must then be ASCII. Other alphabets are
//!   refused rather than folded: `kаda` with a Cyrillic `а` is a different string from
//!   `kada`, and no mapping can tell which one its owner meant.
//!
//! Compatible with existing rows: the earlier rule stored addresses trimmed and
//! lower-cased, and a lower-case ASCII address is its own normal form, so those accounts are
//! found exactly as before. (A row that the earlier rule stored with non-ASCII characters —
//! a look-alike, or a domain in Unicode form — matches no normal form any more and cannot
//! sign in until it is corrected.)

use std::collections::HashSet;
use std::sync::LazyLock;

use email_address::{EmailAddress, Options};
use unicode_normalization::UnicodeNormalization;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in bytes: bcrypt ignores everything after the 72nd byte.
pub const MAX_PASSWORD_BYTES: usize = 72;
/// Longest accepted email address (RFC 5321 path limit).
const MAX_EMAIL_BYTES: usize = 254;
/// Longest input [`normalize_email`] looks at: room for every character of a maximal address
/// to be written in a wider form (a fullwidth letter is 3 bytes), and a bound on the work
/// an unauthenticated request can ask for.
const MAX_RAW_EMAIL_BYTES: usize = 4 * MAX_EMAIL_BYTES;

/// Why an email address was refused. The message is safe to show the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Not an address at all, a form we do not accept (display names, IP literals), or a
    /// domain that IDNA cannot map.
    #[error("`email` must be a valid email address such as ada@example.com")]
    Invalid,
    /// The local part holds letters outside ASCII even after normalisation: a look-alike of
    /// another address, e.g. a Cyrillic `а` for a Latin `a`.
    #[error(
        "`email` must use ASCII letters before the @ (a-z, digits and symbols such as . _ + -), \
         such as ada@example.com"
    )]
    NonAsciiLocalPart,
}

/// The form emails are stored and looked up in (see the [module docs](self)):
/// `" Ada@Example.com"`, `"ａｄａ@ＥＸＡＭＰＬＥ.com"` and `"ada@example.com"` are one account,
/// and `"ada@bücher.example"` is stored as `"ada@xn--bcher-kva.example"`.
///
/// Fails when the address has no `@`, when IDNA cannot map its domain (invalid punycode,
/// disallowed code points), or when its local part is not ASCII. Such an address has no
/// account: sign-up refuses it and sign-in treats it like an unknown email. Whatever it
/// answers still has to pass [`check_email`] before an account is created.
pub fn normalize_email(email: &str) -> Result<String, EmailError> {
    let email = email.trim();
    if email.len() > MAX_RAW_EMAIL_BYTES {
        return Err(EmailError::Invalid);
    }
    // NFKC over the whole address also turns a fullwidth `＠` into the separator.
    let email: String = email.nfkc().collect();
    let (local, domain) = email.rsplit_once('@').ok_or(EmailError::Invalid)?;
    let local = local.to_lowercase();
    if !local.is_ascii() {
        return Err(EmailError::NonAsciiLocalPart);
    }
    let domain = idna::domain_to_ascii(domain).map_err(|_| EmailError::Invalid)?;
    Ok(format!("{local}@{domain}"))
}

/// Checks a normalised email (from [`normalize_email`]) for sign-up: a plain address with a
/// dotted domain, no display name, no IP literal, within the RFC 5321 length limit.
pub fn check_email(email: &str) -> Result<(), EmailError> {
    let options = Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
    };
    if email.len() > MAX_EMAIL_BYTES || EmailAddress::parse_with_options(email, options).is_err() {
        return Err(EmailError::Invalid);
    }
    Ok(())
}

/// Why a password was refused. The message is safe to show the client: it never contains
/// the password.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("`password` must be at least {MIN_PASSWORD_CHARS} characters long")]
    TooShort,
    #[error("`password` must be at most {MAX_PASSWORD_BYTES} bytes long")]
    TooLong,
    /// Nothing but spaces, tabs or other whitespace.
    #[error("`password` must not be only spaces")]
    OnlyWhitespace,
    /// One of the 10,000 most common passwords (the bundled `common-passwords.txt`), in any
    /// letter case.
    #[error("`password` is too common; choose another")]
    TooCommon,
}

/// The 10,000 most common passwords, lower-case, parsed from the bundled list on first use.
/// `common-passwords.txt` says where the list comes from, its licence and how to regenerate
/// it.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common-passwords.txt")
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
});

/// Checks a password for sign-up, following NIST SP 800-63B §5.1.1.2: at least
/// [`MIN_PASSWORD_CHARS`] characters, at most [`MAX_PASSWORD_BYTES`] bytes (bcrypt's
/// limit), not only whitespace, and not one of the most common passwords (compared
/// case-insensitively). No composition rules: any other password is accepted, spaces and
/// all.
pub fn check_password(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.chars().all(char::is_whitespace) {
        return Err(PasswordError::OnlyWhitespace);
    }
    if COMMON_PASSWORDS.contains(password.to_lowercase().as_str()) {
        return Err(PasswordError::TooCommon);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address as sign-up sees it: normalised, then checked.
    fn signup_email(email: &str) -> Result<String, EmailError> {
        let email = normalize_email(email)?;
        check_email(&email)?;
        Ok(email)
    }

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            normalize_email("  Ada@Example.COM\n").as_deref(),
            Ok("ada@example.com")
        );
    }

    #[test]
    fn compatibility_forms_fold_into_the_ascii_address() {
        for same in [
            "\u{ff4b}\u{ff41}\u{ff44}\u{ff41}@example.com", // ｋａｄａ@example.com
            "\u{ff2b}\u{ff21}\u{ff24}\u{ff21}@example.com", // ＫＡＤＡ@example.com
            "kada\u{ff20}example.com",                      // a fullwidth ＠
            "kada@\u{ff25}\u{ff38}\u{ff21}\u{ff2d}\u{ff30}\u{ff2c}\u{ff25}.com", // ＥＸＡＭＰＬＥ
            "\u{212a}ada@example.com",                      // KELVIN SIGN
            "kada@exa\u{00ad}mple.com",                     // a soft hyphen IDNA ignores
        ] {
            assert_eq!(
                signup_email(same).as_deref(),
                Ok("kada@example.com"),
                "{same:?}"
            );
        }
    }

    #[test]
    fn other_alphabets_before_the_at_are_refused() {
        for look_alike in [
            "k\u{0430}da@example.com",               // Cyrillic а
            "\u{043a}\u{0430}d\u{0430}@example.com", // Cyrillic к, а
            "kad\u{03b1}@example.com",               // Greek α
            "k\u{00e1}da@example.com",               // á
            "ka\u{0301}da@example.com",              // a + combining acute: NFKC makes it á
            "\u{0130}da@example.com",                // İ lower-cases to i + a combining dot
        ] {
            assert_eq!(
                normalize_email(look_alike),
                Err(EmailError::NonAsciiLocalPart),
                "{look_alike:?}"
            );
        }
        let message = EmailError::NonAsciiLocalPart.to_string();
        assert!(message.starts_with("`email` must use ASCII letters before the @"));
    }

    #[test]
    fn international_domains_are_stored_in_punycode() {
        for spelling in [
            "ada@b\u{00fc}cher.example",
            "ada@B\u{00dc}CHER.example",
            "ada@xn--bcher-kva.example",
            "ada@XN--BCHER-KVA.example",
        ] {
            assert_eq!(
                signup_email(spelling).as_deref(),
                Ok("ada@xn--bcher-kva.example"),
                "{spelling:?}"
            );
        }
        // UTS #46 without transitional processing: ß stays distinct from ss.
        assert_eq!(
            normalize_email("ada@fa\u{00df}.de").as_deref(),
            Ok("ada@xn--fa-hia.de")
        );
    }

    #[test]
    fn domains_idna_cannot_map_are_invalid() {
        for bad in [
            "ada@xn--a.com",           // invalid punycode
            "ada@\u{fffd}.com",        // a disallowed code point
            "ada@ex\u{200d}ample.com", // a joiner outside its allowed context
            "ada@a\u{05d0}.com",       // mixes directions (the bidi rule)
            "ada",                     // no @ at all
            &format!("{}@example.com", "a".repeat(MAX_RAW_EMAIL_BYTES)),
        ] {
            assert_eq!(normalize_email(bad), Err(EmailError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn normalising_is_idempotent_on_stored_addresses() {
        for stored in [
            "ada@example.com",
            "ada.lovelace+quire@mail.example.org",
            "ada@xn--bcher-kva.example",
        ] {
            assert_eq!(normalize_email(stored).as_deref(), Ok(stored));
        }
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
            assert_eq!(check_email(bad), Err(EmailError::Invalid), "{bad:?}");
            assert!(signup_email(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn passwords_are_between_8_characters_and_72_bytes() {
        assert_eq!(check_password("kx8-pw2"), Err(PasswordError::TooShort));
        assert!(check_password("kx8-pw2z").is_ok());
        assert!(check_password(&"x".repeat(72)).is_ok());
        assert_eq!(check_password(&"x".repeat(73)), Err(PasswordError::TooLong));
        // 8 characters but 24 bytes: long enough, and within bcrypt's limit.
        assert!(check_password("éééééééé").is_ok());
        // 25 characters, 75 bytes: over bcrypt's limit.
        assert!(check_password(&"€".repeat(25)).is_err());
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        for common in [
            "password",
            "PASSWORD",
            "PassWord",
            "12345678",
            "qwertyuiop",
            "iloveyou",
            "Football",
            "trustno1",
            "1qaz2wsx",
        ] {
            assert_eq!(
                check_password(common),
                Err(PasswordError::TooCommon),
                "{common:?}"
            );
        }
        // Too short is said first: the list also holds shorter passwords.
        assert_eq!(check_password("123456"), Err(PasswordError::TooShort));
    }

    #[test]
    fn whitespace_only_passwords_are_refused() {
        for blank in [
            " ".repeat(8),
            " ".repeat(72),
            "\t \t \t \t ".to_owned(),
            "\u{a0}".repeat(8),   // no-break spaces
            "\u{3000}".repeat(8), // ideographic spaces
        ] {
            assert_eq!(
                check_password(&blank),
                Err(PasswordError::OnlyWhitespace),
                "{blank:?}"
            );
        }
        assert_eq!(check_password(&" ".repeat(7)), Err(PasswordError::TooShort));
    }

    #[test]
    fn other_passwords_pass_with_no_composition_rules() {
        for fine in [
            "correct horse battery staple",
            "correct horse battery",
            "tangerine Voltage 42 marsupial orbit",
            "   a    ",
            "alllowercaseletters",
            "Ωmega-\u{1f511}-vault",
        ] {
            assert_eq!(check_password(fine), Ok(()), "{fine:?}");
        }
    }

    #[test]
    fn refusals_never_repeat_the_password() {
        for (password, error) in [
            ("1234567", PasswordError::TooShort),
            ("qwertyuiop", PasswordError::TooCommon),
            ("        ", PasswordError::OnlyWhitespace),
        ] {
            assert_eq!(check_password(password), Err(error));
            assert!(!error.to_string().contains(password), "{error}");
        }
        assert!(!PasswordError::TooLong.to_string().contains(&"x".repeat(73)));
    }

    #[test]
    fn the_bundled_list_holds_10000_lowercase_passwords() {
        let entries: Vec<_> = include_str!("common-passwords.txt")
            .lines()
            .filter(|line| !line.starts_with('#'))
            .collect();
        assert_eq!(entries.len(), 10_000);
        assert_eq!(
            COMMON_PASSWORDS.len(),
            entries.len(),
            "duplicates in the list"
        );
        assert_eq!(entries[..3], ["123456", "password", "12345678"]);
        for entry in entries {
            assert!(!entry.is_empty());
            assert_eq!(entry, entry.to_lowercase(), "{entry:?} is not lower-case");
            assert!(
                !entry.contains(char::is_whitespace),
                "{entry:?} holds whitespace"
            );
        }
    }
}
