//! Opening files that strangers hand us. A model file, config, LoRA or embedding is only read
//! when it is a regular file (a FIFO named `config.json` would block forever, `/dev/zero`
//! named `x.safetensors` would fill memory) and no larger than what that kind of file can be.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Configs, tokenizer vocabularies, `model_index.json`, caches: real ones are well under 2 MB.
pub const MAX_TEXT_FILE_BYTES: u64 = 64 << 20;

/// Opens `path` for reading if it is a regular file (symlinks followed) of at most
/// `max_bytes`; the error says which of the two it is not.
pub fn open_regular(path: &Path, max_bytes: u64) -> std::io::Result<File> {
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if metadata.len() > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} bytes, more than the {} this kind of file can have",
                metadata.len(),
                max_bytes
            ),
        ));
    }
    let file = File::open(path)?;
    // The path may have been swapped between the check and the open.
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// A regular text file of at most [`MAX_TEXT_FILE_BYTES`], read whole (never more than that,
/// even if it grows while being read).
pub fn read_text(path: &Path) -> std::io::Result<String> {
    let file = open_regular(path, MAX_TEXT_FILE_BYTES)?;
    let mut text = String::new();
    file.take(MAX_TEXT_FILE_BYTES).read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_regular_files_are_opened() {
        let dir = std::env::temp_dir().join(format!("latent-studio-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("config.json");
        std::fs::write(&small, "{}").unwrap();
        assert_eq!(read_text(&small).unwrap(), "{}");
        assert!(open_regular(&small, 1).is_err(), "over the size limit");
        assert!(open_regular(&dir, u64::MAX).is_err(), "a folder");
        #[cfg(unix)]
        {
            assert!(open_regular(Path::new("/dev/zero"), u64::MAX).is_err());
            let fifo = dir.join("fifo.json");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                // Would block forever if it were opened.
                assert!(read_text(&fifo).is_err());
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
