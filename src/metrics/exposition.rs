//! The text exposition format (0.0.4): label escaping, number formatting, and the output
//! buffer that gzips as it goes.

use std::fmt::Write as _;
use std::io::Write as _;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value per the text exposition format: `\`, `"` and newline.
pub fn escape_label(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value: integers without a fraction (`-0` as `0`), others in Rust's shortest
/// round-trip form, and the format's own spellings `+Inf`, `-Inf` and `NaN`.
pub fn push_value(out: &mut String, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

pub fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Where the exposition is written: a text buffer that, when compressing, is handed to
/// the gzip encoder every [`Out::CHUNK`] bytes, so rendering 10,000 tokens holds ~64 KiB
/// of text at a time instead of the whole 9 MB body.
pub struct Out {
    buf: String,
    gz: Option<GzEncoder<Vec<u8>>>,
}

impl Out {
    pub const CHUNK: usize = 64 * 1024;

    pub fn plain(capacity: usize) -> Self {
        Self {
            buf: String::with_capacity(capacity),
            gz: None,
        }
    }

    pub fn gzip() -> Self {
        Self {
            buf: String::with_capacity(Self::CHUNK + 4096),
            gz: Some(GzEncoder::new(Vec::new(), Compression::fast())),
        }
    }

    /// Call after each sample: compresses the buffer once it is a chunk long.
    pub fn sample_done(&mut self) {
        if self.buf.len() >= Self::CHUNK {
            if let Some(gz) = &mut self.gz {
                // Writing into a Vec cannot fail.
                let _ = gz.write_all(self.buf.as_bytes());
                self.buf.clear();
            }
        }
    }

    pub fn finish_gzip(mut self) -> Bytes {
        match self.gz.take() {
            Some(mut gz) => {
                let _ = gz.write_all(self.buf.as_bytes());
                Bytes::from(gz.finish().unwrap_or_default())
            }
            None => gzip(self.buf.as_bytes()),
        }
    }
}

impl std::ops::Deref for Out {
    type Target = String;
    fn deref(&self) -> &String {
        &self.buf
    }
}

impl std::ops::DerefMut for Out {
    fn deref_mut(&mut self) -> &mut String {
        &mut self.buf
    }
}

fn gzip(data: &[u8]) -> Bytes {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 8), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    Bytes::from(enc.finish().unwrap_or_default())
}

impl Out {
    /// The text written so far, when not compressing.
    pub fn into_text(self) -> String {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(b: &[u8]) -> String {
        use std::io::Read as _;
        let mut s = String::new();
        flate2::read::GzDecoder::new(b)
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn values_are_written_as_the_text_format_spells_them() {
        let cases: [(f64, &str); 9] = [
            (0.0, "0"),
            (-0.0, "0"),
            (42.0, "42"),
            (-7.0, "-7"),
            (1.5, "1.5"),
            (1_786_000_000.123, "1786000000.123"),
            (1e20, "100000000000000000000"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            let mut s = String::new();
            push_value(&mut s, v);
            assert_eq!(s, want, "{v:?}");
        }
        let mut s = String::new();
        push_value(&mut s, f64::NAN);
        assert_eq!(s, "NaN");
        assert_eq!((bool_value(true), bool_value(false)), (1.0, 0.0));
    }

    #[test]
    fn a_gzip_output_compresses_a_chunk_at_a_time_and_loses_nothing() {
        let sample = format!("{}\n", "x".repeat(99));
        let mut out = Out::gzip();
        let mut text = String::new();
        out.push_str(&sample);
        out.sample_done();
        assert_eq!(
            out.len(),
            100,
            "a short buffer is not compressed after every sample"
        );
        text.push_str(&sample);
        let mut most = 0;
        for i in 0..2_000 {
            let line = format!("{i} {sample}");
            out.push_str(&line);
            text.push_str(&line);
            out.sample_done();
            most = most.max(out.len());
        }
        assert!(
            most < Out::CHUNK,
            "the buffer held {most} bytes after a sample"
        );
        assert_eq!(gunzip(&out.finish_gzip()), text);

        // A plain output gzips at the end, with the same result.
        let mut plain = Out::plain(16);
        plain.push_str(&text);
        assert_eq!(gunzip(&plain.finish_gzip()), text);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label("a\"b\\c\nd", &mut s);
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }
}
