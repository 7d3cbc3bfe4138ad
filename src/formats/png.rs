//! PNG files with an A1111 `parameters` text chunk.
//!
//! Written the way A1111 (through PIL's `PngInfo.add_text`) does it: an uncompressed `tEXt`
//! chunk with keyword `parameters` when the text is Latin-1, else an uncompressed `iTXt`
//! chunk (UTF-8, empty language tag and translated keyword). Read back from `tEXt`, `zTXt`
//! or `iTXt`, before or after the image data.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The text-chunk keyword A1111 uses.
pub const PARAMETERS_KEYWORD: &str = "parameters";

/// Errors reading or writing an image file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ImageIoError {
    /// Opening, writing, syncing or renaming failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The PNG encoder refused the image or its metadata.
    #[error("{}: cannot encode PNG: {source}", path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: png::EncodingError,
    },
    /// The file is not a readable PNG.
    #[error("{}: cannot decode PNG: {source}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: png::DecodingError,
    },
    /// The pixel buffer does not fit the stated size.
    #[error("{}: {message}", path.display())]
    InvalidImage {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ImageIoError + '_ {
    move |source| ImageIoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn is_latin1(text: &str) -> bool {
    text.chars().all(|c| u32::from(c) <= 0xFF)
}

/// A sibling of `path` to write to before renaming: same directory, so the rename is atomic.
fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned());
    let unique = format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    path.with_file_name(unique)
}

/// Writes an 8-bit RGB PNG (`rgb` row-major, 3 bytes a pixel) carrying `parameters` in a
/// text chunk keyed `parameters`. The file is written next to `path` under a temporary name,
/// synced, then renamed over `path`, so a crash never leaves a truncated PNG behind.
pub fn write_png_with_parameters(
    path: &Path,
    rgb: &[u8],
    width: u32,
    height: u32,
    parameters: &str,
) -> Result<(), ImageIoError> {
    check_pixels(path, rgb, width, height)?;
    let tmp = temporary_path(path);
    let result = write_to(&tmp, path, rgb, width, height, parameters)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io_error(path)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// As [`write_png_with_parameters`], but never replaces a file: when `path` exists, nothing
/// is written and the error's `io::ErrorKind` is `AlreadyExists`.
pub fn write_new_png_with_parameters(
    path: &Path,
    rgb: &[u8],
    width: u32,
    height: u32,
    parameters: &str,
) -> Result<(), ImageIoError> {
    let exists = || ImageIoError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the file exists"),
    };
    check_pixels(path, rgb, width, height)?;
    if path.symlink_metadata().is_ok() {
        return Err(exists());
    }
    let tmp = temporary_path(path);
    let result = write_to(&tmp, path, rgb, width, height, parameters).and_then(|()| {
        // A hard link is created only where no file is (atomically); file systems without
        // hard links (FAT, some network shares) get a checked rename instead.
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
            Err(_) if path.symlink_metadata().is_ok() => Err(exists()),
            Err(_) => std::fs::rename(&tmp, path).map_err(io_error(path)),
        }
    });
    let _ = std::fs::remove_file(&tmp);
    result
}

fn check_pixels(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<(), ImageIoError> {
    let expected = (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(3));
    if width == 0 || height == 0 || expected != Some(rgb.len()) {
        return Err(ImageIoError::InvalidImage {
            path: path.to_path_buf(),
            message: format!(
                "{} bytes of pixels for a {width}x{height} RGB image (expected {})",
                rgb.len(),
                expected.map_or_else(|| "too many".to_string(), |n| n.to_string())
            ),
        });
    }
    Ok(())
}

fn write_to(
    tmp: &Path,
    target: &Path,
    rgb: &[u8],
    width: u32,
    height: u32,
    parameters: &str,
) -> Result<(), ImageIoError> {
    let encode_error = |source| ImageIoError::Encode {
        path: target.to_path_buf(),
        source,
    };
    let file = File::create(tmp).map_err(io_error(target))?;
    let mut out = BufWriter::new(file);
    encode(&mut out, rgb, width, height, Some(parameters)).map_err(encode_error)?;
    out.flush().map_err(io_error(target))?;
    let file = out.into_inner().map_err(|e| ImageIoError::Io {
        path: target.to_path_buf(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_error(target))
}

/// The PNG file [`write_png_with_parameters`] writes, in memory (for an HTTP reply);
/// without a `parameters` chunk when `parameters` is `None` (a live preview).
pub fn encode_png_with_parameters(
    rgb: &[u8],
    width: u32,
    height: u32,
    parameters: Option<&str>,
) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    encode(&mut out, rgb, width, height, parameters)?;
    Ok(out)
}

/// An 8-bit RGB PNG with the `parameters` text chunk as A1111 writes it.
fn encode(
    out: &mut impl Write,
    rgb: &[u8],
    width: u32,
    height: u32,
    parameters: Option<&str>,
) -> Result<(), png::EncodingError> {
    let mut encoder = png::Encoder::new(out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    match parameters {
        Some(text) if is_latin1(text) => {
            encoder.add_text_chunk(PARAMETERS_KEYWORD.to_string(), text.to_string())?
        }
        Some(text) => encoder.add_itxt_chunk(PARAMETERS_KEYWORD.to_string(), text.to_string())?,
        None => {}
    }
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()
}

/// A `parameters` text longer than this is not one (A1111's are a few kB); compressed ones are
/// inflated only up to it, so a small zTXt chunk cannot expand into gigabytes.
pub const MAX_PARAMETERS_BYTES: usize = 256 << 10;

fn find_parameters(info: &png::Info<'_>) -> Result<Option<String>, png::DecodingError> {
    let too_long = || png::DecodingError::LimitsExceeded;
    let bounded = |text: String| {
        if text.len() > MAX_PARAMETERS_BYTES {
            Err(too_long())
        } else {
            Ok(Some(text))
        }
    };
    if let Some(chunk) = info
        .uncompressed_latin1_text
        .iter()
        .find(|c| c.keyword == PARAMETERS_KEYWORD)
    {
        return bounded(chunk.text.clone());
    }
    if let Some(chunk) = info
        .compressed_latin1_text
        .iter()
        .find(|c| c.keyword == PARAMETERS_KEYWORD)
    {
        let mut chunk = chunk.clone();
        chunk
            .decompress_text_with_limit(MAX_PARAMETERS_BYTES)
            .map_err(|_| too_long())?;
        return bounded(chunk.get_text()?);
    }
    if let Some(chunk) = info
        .utf8_text
        .iter()
        .find(|c| c.keyword == PARAMETERS_KEYWORD)
    {
        let mut chunk = chunk.clone();
        chunk
            .decompress_text_with_limit(MAX_PARAMETERS_BYTES)
            .map_err(|_| too_long())?;
        return bounded(chunk.get_text()?);
    }
    Ok(None)
}

/// The `parameters` text of a PNG (`tEXt`, `zTXt` or `iTXt`), or `None` when it has none.
pub fn read_png_parameters(path: &Path) -> Result<Option<String>, ImageIoError> {
    let file = crate::files::open_regular(path, u64::MAX).map_err(io_error(path))?;
    parameters_from(BufReader::new(file)).map_err(|source| ImageIoError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// [`read_png_parameters`] for a PNG already in memory.
pub fn png_parameters_from_bytes(bytes: &[u8]) -> Result<Option<String>, png::DecodingError> {
    parameters_from(std::io::Cursor::new(bytes))
}

fn parameters_from(
    input: impl std::io::BufRead + std::io::Seek,
) -> Result<Option<String>, png::DecodingError> {
    let mut reader = png::Decoder::new(input).read_info()?;
    // PIL and A1111 put text chunks before the image data; others may put them after.
    if let Some(text) = find_parameters(reader.info())? {
        return Ok(Some(text));
    }
    reader.finish()?;
    find_parameters(reader.info())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unique path in the system temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str) -> TempFile {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            TempFile(std::env::temp_dir().join(format!(
                "latent-studio-png-{tag}-{}-{}-{nanos}.png",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            )))
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn gradient(width: u32, height: u32) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..height {
            for x in 0..width {
                v.extend([(x * 255 / width) as u8, (y * 255 / height) as u8, 128]);
            }
        }
        v
    }

    /// The (type, payload) of every chunk, to check what was written.
    fn chunks(path: &Path) -> Vec<(String, Vec<u8>)> {
        let bytes = std::fs::read(path).expect("read png");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let mut out = Vec::new();
        let mut pos = 8;
        while pos + 8 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("len")) as usize;
            let kind = String::from_utf8_lossy(&bytes[pos + 4..pos + 8]).into_owned();
            out.push((kind, bytes[pos + 8..pos + 8 + len].to_vec()));
            pos += 12 + len;
        }
        out
    }

    #[test]
    fn latin1_text_goes_in_text_chunk_and_pixels_survive() {
        let file = TempFile::new("latin1");
        let text = "café, (masterpiece:1.2)\nNegative prompt: ugly\nSteps: 20, Sampler: Euler a, \
                    CFG scale: 7, Seed: 1, Size: 8x4";
        let rgb = gradient(8, 4);
        write_png_with_parameters(&file.0, &rgb, 8, 4, text).expect("write");

        let chunks = chunks(&file.0);
        let text_chunk = chunks
            .iter()
            .find(|(k, _)| k == "tEXt")
            .expect("a tEXt chunk");
        let mut expected = b"parameters\0".to_vec();
        expected.extend(text.chars().map(|c| c as u8));
        assert_eq!(text_chunk.1, expected);
        assert!(!chunks.iter().any(|(k, _)| k == "iTXt"));
        let text_index = chunks.iter().position(|(k, _)| k == "tEXt");
        let idat_index = chunks.iter().position(|(k, _)| k == "IDAT");
        assert!(text_index < idat_index);

        assert_eq!(
            read_png_parameters(&file.0).expect("read").as_deref(),
            Some(text)
        );
        let img = image::open(&file.0).expect("decode").to_rgb8();
        assert_eq!(img.dimensions(), (8, 4));
        assert_eq!(img.into_raw(), rgb);
    }

    #[test]
    fn non_latin1_text_goes_in_itxt_chunk() {
        let file = TempFile::new("utf8");
        let text = "猫と犬 🐱\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 2x2";
        write_png_with_parameters(&file.0, &gradient(2, 2), 2, 2, text).expect("write");
        let chunks = chunks(&file.0);
        assert!(!chunks.iter().any(|(k, _)| k == "tEXt"));
        let itxt = chunks
            .iter()
            .find(|(k, _)| k == "iTXt")
            .expect("an iTXt chunk");
        // keyword \0, compression flag 0, method 0, empty language \0, empty translation \0.
        let mut expected = b"parameters\0\0\0\0\0".to_vec();
        expected.extend(text.as_bytes());
        assert_eq!(itxt.1, expected);
        assert_eq!(
            read_png_parameters(&file.0).expect("read").as_deref(),
            Some(text)
        );
    }

    #[test]
    fn reads_ztxt_and_text_after_image_data_and_absence() {
        // zTXt before IDAT and a compressed iTXt after it, written with the png crate directly.
        let file = TempFile::new("ztxt");
        {
            let out = BufWriter::new(File::create(&file.0).expect("create"));
            let mut encoder = png::Encoder::new(out, 2, 2);
            encoder.set_color(png::ColorType::Rgb);
            encoder
                .add_ztxt_chunk("parameters".to_string(), "zipped, Steps: 3".to_string())
                .expect("ztxt");
            encoder
                .add_text_chunk("Software".to_string(), "test".to_string())
                .expect("text");
            let mut writer = encoder.write_header().expect("header");
            writer.write_image_data(&gradient(2, 2)).expect("data");
            writer.finish().expect("finish");
        }
        assert_eq!(
            read_png_parameters(&file.0).expect("read").as_deref(),
            Some("zipped, Steps: 3")
        );

        let after = TempFile::new("after");
        {
            let out = BufWriter::new(File::create(&after.0).expect("create"));
            let mut encoder = png::Encoder::new(out, 2, 2);
            encoder.set_color(png::ColorType::Rgb);
            let mut writer = encoder.write_header().expect("header");
            writer.write_image_data(&gradient(2, 2)).expect("data");
            let mut chunk = png::text_metadata::ITXtChunk::new("parameters", "après 🐱");
            chunk.compress_text().expect("compress");
            writer.write_text_chunk(&chunk).expect("itxt");
            writer.finish().expect("finish");
        }
        assert_eq!(
            read_png_parameters(&after.0).expect("read").as_deref(),
            Some("après 🐱")
        );

        let plain = TempFile::new("plain");
        write_png_with_parameters(&plain.0, &gradient(2, 2), 2, 2, "x").expect("write");
        // Overwriting an existing file works and replaces its text.
        write_png_with_parameters(&plain.0, &gradient(2, 2), 2, 2, "y").expect("rewrite");
        assert_eq!(
            read_png_parameters(&plain.0).expect("read").as_deref(),
            Some("y")
        );
        let none = TempFile::new("none");
        image::RgbImage::new(2, 2).save(&none.0).expect("save");
        assert_eq!(read_png_parameters(&none.0).expect("read"), None);
    }

    #[test]
    fn a_compressed_text_bomb_is_refused_not_inflated() {
        // 64 MiB of text compresses to ~64 kB; it must not be inflated whole.
        let file = TempFile::new("bomb");
        {
            let out = BufWriter::new(File::create(&file.0).expect("create"));
            let mut encoder = png::Encoder::new(out, 2, 2);
            encoder.set_color(png::ColorType::Rgb);
            encoder
                .add_ztxt_chunk("parameters".to_string(), "a".repeat(64 << 20))
                .expect("ztxt");
            let mut writer = encoder.write_header().expect("header");
            writer.write_image_data(&gradient(2, 2)).expect("data");
            writer.finish().expect("finish");
        }
        assert!(std::fs::metadata(&file.0).unwrap().len() < 1 << 20);
        let err = read_png_parameters(&file.0).expect_err("refused");
        assert!(
            err.to_string().contains(&*file.0.to_string_lossy()),
            "{err}"
        );
    }

    #[test]
    fn new_files_never_replace_existing_ones() {
        let file = TempFile::new("new");
        write_new_png_with_parameters(&file.0, &gradient(2, 2), 2, 2, "first").expect("write");
        let err = write_new_png_with_parameters(&file.0, &gradient(2, 2), 2, 2, "second")
            .expect_err("exists");
        assert!(
            matches!(&err, ImageIoError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
            "{err}"
        );
        assert_eq!(
            read_png_parameters(&file.0).expect("read").as_deref(),
            Some("first")
        );
    }

    #[test]
    fn errors_name_the_file_and_leave_nothing_behind() {
        let file = TempFile::new("bad");
        let err = write_png_with_parameters(&file.0, &[0; 5], 2, 2, "x").expect_err("size");
        assert!(matches!(err, ImageIoError::InvalidImage { .. }));
        assert!(err.to_string().contains("latent-studio-png-bad"), "{err}");
        assert!(!file.0.exists());

        let missing_dir = std::env::temp_dir()
            .join("latent-studio-no-such-dir-4b1d")
            .join("out.png");
        let err = write_png_with_parameters(&missing_dir, &gradient(2, 2), 2, 2, "x")
            .expect_err("no dir");
        assert!(err.to_string().contains("out.png"), "{err}");

        let err = read_png_parameters(&missing_dir).expect_err("missing");
        assert!(matches!(err, ImageIoError::Io { .. }));

        std::fs::write(&file.0, b"not a png at all").expect("write");
        let err = read_png_parameters(&file.0).expect_err("garbage");
        assert!(matches!(err, ImageIoError::Decode { .. }));
        assert!(err.to_string().contains("latent-studio-png-bad"), "{err}");

        // No temporary files are left next to the outputs.
        let leftovers = std::fs::read_dir(std::env::temp_dir())
            .expect("list temp")
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(".latent-studio-png-bad") && name.ends_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
