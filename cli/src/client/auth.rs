//! `quire signup`, `quire login`, `quire logout`.
//!
//! `signup` signs in straight away with the new account, so `signup` then `reports create`
//! works without a `login` in between.

use std::io::Read;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::api::{Api, document};
use super::error::Error;
use super::output::{note, print, print_json};
use crate::args::{OutputMode, PasswordArgs};

pub async fn signup(api: &mut Api, args: PasswordArgs, output: OutputMode) -> Result<(), Error> {
    let password = password(&args, true)?;
    let request = api.http().post(api.url("/auth/signup")).json(&json!({
        "email": args.email,
        "password": password.expose_secret(),
    }));
    let user = document(api.send(request).await?).await?;
    // The server may have normalised the address: sign in as it stored it.
    let email = user["email"].as_str().unwrap_or(&args.email).to_owned();
    api.sign_in(&email, password.expose_secret()).await?;
    match output {
        OutputMode::Json => print_json(&user),
        OutputMode::Human => print(&format!(
            "Signed up and signed in as {email} on {}.\n",
            api.server()
        )),
    }
}

pub async fn login(api: &mut Api, args: PasswordArgs, output: OutputMode) -> Result<(), Error> {
    let password = password(&args, false)?;
    let email = api
        .sign_in(&args.email, password.expose_secret())
        .await?
        .email
        .clone();
    match output {
        // The account (`GET /me`), never the tokens: they stay in the credentials file.
        OutputMode::Json => {
            let url = api.url("/me");
            let me = document(api.send_authed(|http| http.get(&url)).await?).await?;
            print_json(&me)
        }
        OutputMode::Human => print(&format!("Signed in as {email} on {}.\n", api.server())),
    }
}

/// Revokes the session on the server that issued it and removes the credentials file. The
/// file goes even when the server cannot be reached (with a warning): logging out must
/// always leave this machine signed out.
pub async fn logout(api: &mut Api, output: OutputMode) -> Result<(), Error> {
    let Some(credentials) = api.store().load().ok().flatten() else {
        api.store().remove()?;
        return match output {
            OutputMode::Json => print_json(&json!({"signed_out": false})),
            OutputMode::Human => print("Not signed in.\n"),
        };
    };
    let request = api
        .http()
        .post(format!("{}/auth/signout", credentials.server))
        .json(&json!({"refresh_token": credentials.refresh_token}));
    if let Err(e) = api.send(request).await {
        note(&format!(
            "warning: the session could not be revoked on {} ({e}); the local credentials are removed anyway",
            credentials.server
        ));
    }
    api.store().remove()?;
    match output {
        OutputMode::Json => print_json(&json!({"signed_out": true, "email": credentials.email})),
        OutputMode::Human => print(&format!(
            "Signed out {} from {}.\n",
            credentials.email, credentials.server
        )),
    }
}

/// The password: all of standard input with `--password-stdin` (one trailing newline
/// removed), else a prompt on the terminal (twice on sign-up, to catch a typo).
fn password(args: &PasswordArgs, confirm: bool) -> Result<SecretString, Error> {
    if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::io("reading the password from standard input", e))?;
        let text = SecretString::from(text);
        let trimmed = text
            .expose_secret()
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(text.expose_secret());
        if trimmed.is_empty() {
            return Err(Error::Usage(
                "--password-stdin: standard input was empty".to_owned(),
            ));
        }
        return Ok(SecretString::from(trimmed));
    }
    let no_terminal = |e| {
        Error::Usage(format!(
            "cannot prompt for the password ({e}); pipe it in with --password-stdin"
        ))
    };
    let first = SecretString::from(rpassword::prompt_password("Password: ").map_err(no_terminal)?);
    if confirm {
        let again = SecretString::from(
            rpassword::prompt_password("Password (again): ").map_err(no_terminal)?,
        );
        if again.expose_secret() != first.expose_secret() {
            return Err(Error::Usage("the passwords do not match".to_owned()));
        }
    }
    Ok(first)
}
