//! Downloading a report's file: `GET /reports/{id}/download` answers 302 to a link that
//! carries its own authorization (a presigned S3 URL, or the server's signed `/files`
//! link), which is fetched without the bearer token and streamed to disk.
//!
//! A file appears only complete: the body goes to a temporary file in the destination's
//! directory, renamed over the destination at the end. An error status (409 while the
//! report is not completed, 410 once its output was deleted) or a broken transfer leaves
//! nothing behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use reqwest::header::LOCATION;
use reqwest::{Response, StatusCode};

use super::api::{Api, check};
use super::error::{Error, chain};

/// Where a download goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
}

impl Destination {
    /// `-o` as given: `-` is standard output; none is `<id>.<extension>` in the current
    /// directory.
    pub fn new(file: Option<&str>, id: &str, extension: &str) -> Self {
        match file {
            Some("-") => Self::Stdout,
            Some(path) => Self::File(PathBuf::from(path)),
            None => Self::File(PathBuf::from(default_name(id, extension))),
        }
    }
}

/// `<id>.<extension>`, from characters that cannot make a path: the id and the format come
/// from the server, and a file name is no place to trust it.
fn default_name(id: &str, extension: &str) -> String {
    let safe = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
    };
    let (id, extension) = (safe(id), safe(extension));
    match (id.is_empty(), extension.is_empty()) {
        (false, false) => format!("{id}.{extension}"),
        (false, true) => id,
        (true, _) => "report".to_owned(),
    }
}

/// What was written.
pub struct Saved {
    pub bytes: u64,
}

/// The report's file, from the redirect to `destination`.
pub async fn download(api: &mut Api, id: &str, destination: &Destination) -> Result<Saved, Error> {
    let file = open_file(api, id).await?;
    match destination {
        Destination::Stdout => {
            let mut stdout = std::io::stdout().lock();
            let bytes = copy(file, &mut stdout).await?;
            stdout
                .flush()
                .map_err(|e| Error::io("writing to standard output", e))?;
            Ok(Saved { bytes })
        }
        Destination::File(path) => save(file, path).await,
    }
}

/// The response carrying the file's bytes (status 200).
async fn open_file(api: &mut Api, id: &str) -> Result<Response, Error> {
    let url = api.url(&format!("/reports/{id}/download"));
    let answer = api.send_authed(|http| http.get(&url)).await?;
    if answer.status() == StatusCode::OK {
        // A server that serves the file itself.
        return Ok(answer);
    }
    let location = answer
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Error::BadResponse(format!(
                "{} from the download route without a Location",
                answer.status()
            ))
        })?;
    // Relative links are resolved against the route that gave them.
    let link = url::Url::parse(&url)
        .and_then(|base| base.join(location))
        .map_err(|e| Error::BadResponse(format!("download link `{location}`: {e}")))?;
    let origin = link.origin().ascii_serialization();
    let response = api
        .http()
        .get(link)
        .send()
        .await
        .map_err(|e| Error::Unreachable {
            server: origin,
            cause: chain(&e),
        })?;
    let response = check(response).await?;
    if response.status() != StatusCode::OK {
        return Err(Error::BadResponse(format!(
            "{} from the download link",
            response.status()
        )));
    }
    Ok(response)
}

/// Streams `file` into a temporary file next to `path`, then renames it over `path`.
async fn save(file: Response, path: &Path) -> Result<Saved, Error> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let failed = |e| Error::io(format!("writing {}", path.display()), e);
    // Removed on drop: any error below leaves no file.
    let mut temporary = tempfile::Builder::new()
        .prefix(".quire-download")
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(failed)?;
    let bytes = copy(file, temporary.as_file_mut()).await?;
    temporary.as_file().sync_all().map_err(failed)?;
    temporary.persist(path).map_err(|e| failed(e.error))?;
    Ok(Saved { bytes })
}

/// Copies the body to `sink` chunk by chunk: a file of any size takes little memory.
async fn copy(file: Response, sink: &mut impl Write) -> Result<u64, Error> {
    let mut body = file.bytes_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| Error::BadResponse(format!("the download broke off: {}", chain(&e))))?;
        sink.write_all(&chunk)
            .map_err(|e| Error::io("writing the download", e))?;
        bytes += chunk.len() as u64;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_cannot_escape_the_directory() {
        assert_eq!(default_name("0190-ab", "pdf"), "0190-ab.pdf");
        assert_eq!(default_name("../../etc/passwd", "pdf"), "etcpasswd.pdf");
        assert_eq!(default_name("a", "../x"), "a.x");
        assert_eq!(default_name("", "pdf"), "report");
        assert_eq!(Destination::new(Some("-"), "a", "pdf"), Destination::Stdout);
    }
}
