//! What a file's bytes are: the declared MIME type of an upload must agree with its magic numbers
//! (PROTOCOL §3.6), so HTML declared as `image/png` never reaches a browser as an image.
//!
//! Image, video and audio files and PDFs are only accepted in the formats listed here; anything
//! else under those types (SVG, which is XML and may hold script, among them) is refused. Other
//! types, when the configuration allows them, are stored as they are and always downloaded as
//! `attachment` in a sandbox.

/// A MIME type without parameters, lower-cased.
pub fn normalize(mime: &str) -> String {
    mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Whether `mime` matches one of `patterns` (`*`, `*/*`, `type/*` or an exact type).
pub fn allowed(mime: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| {
        let p = p.trim().to_ascii_lowercase();
        p == "*"
            || p == "*/*"
            || p == mime
            || p.strip_suffix("/*").is_some_and(|main| mime.split('/').next() == Some(main))
    })
}

/// The format family a declared type must prove with its bytes, if it is one that browsers render.
fn signature(mime: &str) -> Option<fn(&[u8]) -> bool> {
    Some(match mime {
        "image/png" | "image/apng" => |b| b.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" | "image/jpg" | "image/pjpeg" => |b| b.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/gif" => |b| b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a"),
        "image/webp" => |b| riff(b, b"WEBP"),
        "video/mp4" | "video/quicktime" | "audio/mp4" | "audio/x-m4a" | "audio/m4a" | "video/x-m4v" => {
            |b| b.get(4..8) == Some(b"ftyp")
        }
        "video/webm" | "audio/webm" | "video/x-matroska" => |b| b.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]),
        "audio/ogg" | "video/ogg" | "application/ogg" | "audio/opus" => |b| b.starts_with(b"OggS"),
        "audio/mpeg" | "audio/mp3" => |b| b.starts_with(b"ID3") || (b.len() > 1 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0),
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => |b| riff(b, b"WAVE"),
        "audio/flac" | "audio/x-flac" => |b| b.starts_with(b"fLaC"),
        "application/pdf" => |b| b.starts_with(b"%PDF-"),
        _ => return None,
    })
}

fn riff(b: &[u8], kind: &[u8; 4]) -> bool {
    b.starts_with(b"RIFF") && b.get(8..12) == Some(kind)
}

/// Whether `bytes` may be stored as `mime` (normalised): rendered types must match their magic
/// numbers; unrendered types pass.
pub fn matches(mime: &str, bytes: &[u8]) -> bool {
    match signature(mime) {
        Some(check) => check(bytes),
        None => !["image/", "video/", "audio/"].iter().any(|p| mime.starts_with(p)) && mime != "application/pdf",
    }
}

/// Whether a browser may show this stored type in place (PROTOCOL §3.6); everything else downloads.
pub fn inline(mime: &str) -> bool {
    signature(mime).is_some() && mime != "application/pdf"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = vec!["image/*".to_owned(), "application/pdf".to_owned()];
        assert!(allowed("image/png", &p));
        assert!(allowed("application/pdf", &p));
        assert!(!allowed("application/pdfx", &p));
        assert!(!allowed("imagex/png", &p));
        assert!(allowed("text/plain", &["*".to_owned()]));
        assert_eq!(normalize(" Image/PNG; charset=x"), "image/png");
    }

    #[test]
    fn magic_numbers() {
        assert!(matches("image/png", b"\x89PNG\r\n\x1a\nrest"));
        assert!(!matches("image/png", b"<html><script>alert(1)</script>"));
        assert!(!matches("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>"));
        assert!(matches("application/pdf", b"%PDF-1.4"));
        assert!(matches("text/plain", b"hello"));
        assert!(matches("video/mp4", b"\0\0\0\x18ftypmp42"));
        assert!(!inline("image/svg+xml") && inline("image/png") && !inline("application/pdf"));
    }
}
