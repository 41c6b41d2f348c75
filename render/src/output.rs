//! Writing an output file atomically: a temporary file in the same directory, renamed
//! over the destination only once it is complete.
//!
//! Renders write to the worker's scratch directory, not to where outputs are kept: the
//! copy that must survive a crash is the one storage makes (`OutputStorage::put_file`
//! syncs it, S3 acknowledges it). So the rename makes a render all-or-nothing, and nothing
//! here waits for the disk.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::RenderError;

/// A file being written for `out`. Dropping it without [`AtomicOutput::commit`] deletes
/// the temporary file and leaves `out` untouched.
pub(crate) struct AtomicOutput {
    temp: tempfile::NamedTempFile,
    out: PathBuf,
}

impl AtomicOutput {
    /// Creates the temporary file next to `out` (same directory, so the rename is atomic).
    pub fn create(out: &Path) -> Result<Self, RenderError> {
        let dir = match out.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".quire-render-")
            .suffix(".tmp")
            .tempfile_in(dir)?;
        Ok(Self {
            temp,
            out: out.to_owned(),
        })
    }

    /// A buffered writer over the temporary file.
    pub fn writer(&mut self) -> BufWriter<&mut File> {
        BufWriter::with_capacity(64 * 1024, self.temp.as_file_mut())
    }

    /// Moves the file to `out`, replacing any file there (see the module docs on why it is
    /// not synced).
    pub fn commit(self) -> Result<(), RenderError> {
        self.temp
            .persist(&self.out)
            .map_err(|e| RenderError::Io(e.error))?;
        Ok(())
    }
}

/// Writes `bytes` to `out` atomically.
pub(crate) fn write_atomically(out: &Path, bytes: &[u8]) -> Result<(), RenderError> {
    let mut output = AtomicOutput::create(out)?;
    {
        let mut writer = output.writer();
        writer.write_all(bytes)?;
        writer.flush()?;
    }
    output.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_appears_at_out_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("report.csv");
        {
            let mut output = AtomicOutput::create(&out).unwrap();
            output.writer().write_all(b"partial").unwrap();
            // Dropped without commit: a failed render.
        }
        assert!(!out.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp file left behind"
        );

        write_atomically(&out, b"done").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"done");
        write_atomically(&out, b"again").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"again");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
