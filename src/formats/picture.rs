//! Reading any picture a user hands us (a start image, a dropped file) without trusting it:
//! only a regular file is opened, and decoding stops before it needs more memory than a
//! picture this app could use.

use std::io::BufReader;
use std::path::Path;

/// Pictures wider or taller than this are refused (SDXL works at 1024; upscaled outputs reach
/// a few thousand pixels).
pub const MAX_PICTURE_SIDE: u32 = 16384;
/// Decoded pixels take at most this much memory (16384² RGBA is 1 GiB).
const MAX_DECODE_BYTES: u64 = 1 << 30;

/// Decodes the picture in `path` (any format the `image` crate reads, by content) to 8-bit
/// RGB. The error says what is wrong in words a user can act on.
pub fn read_picture(path: &Path) -> Result<image::RgbImage, String> {
    read_picture_as_stored(path).map(|picture| picture.to_rgb8())
}

/// As [`read_picture`], keeping the picture's own channels (a mask's alpha).
pub fn read_picture_as_stored(path: &Path) -> Result<image::DynamicImage, String> {
    let file = crate::files::open_regular(path, u64::MAX)
        .map_err(|err| format!("cannot open {}: {err}", path.display()))?;
    decode_bounded(BufReader::new(file), &path.display().to_string())
}

/// As [`read_picture_as_stored`], for a file's bytes already in memory (an upload);
/// `name` says in messages what the bytes are.
pub fn read_picture_from_bytes(bytes: &[u8], name: &str) -> Result<image::DynamicImage, String> {
    decode_bounded(std::io::Cursor::new(bytes), name)
}

fn decode_bounded(
    input: impl std::io::BufRead + std::io::Seek,
    name: &str,
) -> Result<image::DynamicImage, String> {
    let mut reader = image::ImageReader::new(input)
        .with_guessed_format()
        .map_err(|err| format!("cannot read {name}: {err}"))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_PICTURE_SIDE);
    limits.max_image_height = Some(MAX_PICTURE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|err| match err {
        image::ImageError::Limits(_) => format!(
            "{name} is larger than this app reads (at most {MAX_PICTURE_SIDE} pixels a side)"
        ),
        err => format!("{name} is not an image this app can read: {err}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_and_fake_pictures_are_refused_with_a_reason() {
        let dir =
            std::env::temp_dir().join(format!("latent-studio-picture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A 65536×1 PNG is a few hundred bytes.
        let wide = dir.join("wide.png");
        image::RgbImage::new(65536, 1).save(&wide).unwrap();
        let err = read_picture(&wide).unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        let fake = dir.join("fake.png");
        std::fs::write(&fake, b"not a picture").unwrap();
        assert!(read_picture(&fake).unwrap_err().contains("not an image"));
        assert!(read_picture(&dir).unwrap_err().contains("cannot open"));
        let fine = dir.join("fine.png");
        image::RgbImage::new(3, 2).save(&fine).unwrap();
        assert_eq!(read_picture(&fine).unwrap().dimensions(), (3, 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
