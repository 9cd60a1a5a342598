//! Uploaded images are decoded, turned upright (EXIF orientation), shrunk to fit 1920×1920 and
//! re-encoded in their own format (PROTOCOL §3.6). Re-encoding also drops metadata such as a
//! photo's GPS position. GIFs are kept as they are (re-encoding would lose their animation).
//!
//! Decoding is bounded: a small file cannot claim a huge canvas and make the server allocate it.

use std::io::Cursor;

use image::{
    DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, codecs::jpeg::JpegEncoder, codecs::png::PngEncoder,
    codecs::webp::WebPEncoder, imageops::FilterType, metadata::Orientation,
};

/// Longest side of a stored image.
pub const MAX_SIDE: u32 = 1920;
/// Largest canvas a decoder may open, per side.
const DECODE_SIDE: u32 = 16_384;
/// Most memory a decoder may allocate.
const DECODE_ALLOC: u64 = 512 * 1024 * 1024;
/// JPEG quality of re-encoded photos.
const JPEG_QUALITY: u8 = 85;

/// What is stored for an upload: its bytes, and its size in pixels when it is an image.
#[derive(Debug)]
pub struct Stored {
    pub bytes: Vec<u8>,
    pub dimensions: Option<(u32, u32)>,
}

fn format_of(mime: &str) -> Option<ImageFormat> {
    Some(match mime {
        "image/png" | "image/apng" => ImageFormat::Png,
        "image/jpeg" | "image/jpg" | "image/pjpeg" => ImageFormat::Jpeg,
        "image/webp" => ImageFormat::WebP,
        "image/gif" => ImageFormat::Gif,
        _ => return None,
    })
}

/// What to store for an upload of type `mime`: other types unchanged, images as described above;
/// `Err` when the bytes are not a decodable image of the declared type.
pub fn prepare(mime: &str, bytes: Vec<u8>) -> Result<Stored, image::ImageError> {
    let Some(format) = format_of(mime) else { return Ok(Stored { bytes, dimensions: None }) };
    let mut reader = ImageReader::with_format(Cursor::new(&bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(DECODE_SIDE);
    limits.max_image_height = Some(DECODE_SIDE);
    limits.max_alloc = Some(DECODE_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    if format == ImageFormat::Gif {
        let dimensions = decoder.dimensions();
        drop(decoder);
        return Ok(Stored { bytes, dimensions: Some(dimensions) });
    }
    let orientation = decoder.orientation()?;
    let mut img = DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    let resized = img.width() > MAX_SIDE || img.height() > MAX_SIDE;
    if resized {
        img = img.resize(MAX_SIDE, MAX_SIDE, FilterType::Triangle);
    }
    let mut out = Vec::new();
    match format {
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(img.to_rgb8())
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY))?,
        ImageFormat::WebP => {
            DynamicImage::ImageRgba8(img.to_rgba8()).write_with_encoder(WebPEncoder::new_lossless(&mut out))?
        }
        _ => img.write_with_encoder(PngEncoder::new(&mut out))?,
    }
    // A lossless re-encode of a small, upright image can come out larger than what was sent
    // (WebP and PNG); then the original is as good and smaller. JPEGs are always re-encoded so
    // their metadata goes.
    let keep_original =
        !resized && orientation == Orientation::NoTransforms && format != ImageFormat::Jpeg && out.len() >= bytes.len();
    Ok(Stored { bytes: if keep_original { bytes } else { out }, dimensions: Some((img.width(), img.height())) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn large_images_shrink_to_fit() {
        let big = DynamicImage::new_rgb8(2400, 300);
        for (mime, format) in [("image/png", ImageFormat::Png), ("image/jpeg", ImageFormat::Jpeg)] {
            let stored = prepare(mime, encoded(&big, format)).unwrap();
            assert_eq!(stored.dimensions, Some((1920, 240)), "{mime}");
            let back = image::load_from_memory_with_format(&stored.bytes, format).unwrap();
            assert_eq!((back.width(), back.height()), (1920, 240));
        }
    }

    #[test]
    fn small_images_keep_their_size_and_gifs_their_bytes() {
        let small = DynamicImage::new_rgba8(10, 20);
        let stored = prepare("image/png", encoded(&small, ImageFormat::Png)).unwrap();
        assert_eq!(stored.dimensions, Some((10, 20)));
        let gif = encoded(&small, ImageFormat::Gif);
        let stored = prepare("image/gif", gif.clone()).unwrap();
        assert_eq!((stored.dimensions, stored.bytes), (Some((10, 20)), gif));
        let pdf = prepare("application/pdf", b"%PDF".to_vec()).unwrap();
        assert_eq!((pdf.dimensions, pdf.bytes), (None, b"%PDF".to_vec()));
        assert!(prepare("image/png", b"\x89PNG\r\n\x1a\n garbage".to_vec()).is_err());
    }
}
