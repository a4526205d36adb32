//! How `dynhost show` prints a stored value: JSON pretty-printed, other UTF-8
//! as text, anything else as a hex preview; long values cut with a note.

use std::fmt::Write as _;

/// Lines of a value shown before it is cut (without `--full`).
const SHOWN_LINES: usize = 40;

/// Characters of a value shown before it is cut (without `--full`).
const SHOWN_CHARS: usize = 4000;

/// Bytes of a binary value shown as hex (without `--full`).
const SHOWN_HEX: usize = 256;

/// JSON up to this long (compact) stays on one line.
const ONE_LINE_JSON: usize = 72;

/// `bytes` as the lines to print, each without its newline.
pub fn render(bytes: &[u8], full: bool) -> Vec<String> {
    // Text is UTF-8 without control characters other than line breaks and
    // tabs; anything else (NUL bytes too) is shown as hex.
    let text = match std::str::from_utf8(bytes) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
        {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(json) => {
                    let compact = json.to_string();
                    if compact.len() <= ONE_LINE_JSON {
                        compact
                    } else {
                        serde_json::to_string_pretty(&json).unwrap_or(compact)
                    }
                }
                Err(_) => text.to_owned(),
            }
        }
        _ => return hex_dump(bytes, full),
    };
    let mut lines: Vec<String> = Vec::new();
    let mut shown = 0;
    let mut cut = false;
    for line in text.lines() {
        if !full && (lines.len() == SHOWN_LINES || shown + line.len() > SHOWN_CHARS) {
            cut = true;
            break;
        }
        shown += line.len();
        lines.push(line.to_owned());
    }
    if cut {
        lines.push(format!(
            "… cut: {} in all; `--full` shows all of it, `--raw` writes the bytes",
            size(bytes.len())
        ));
    }
    if lines.is_empty() {
        lines.push("(empty)".to_owned());
    }
    lines
}

/// `bytes` in the form `xxd` prints: offset, 16 bytes in hex, printable ASCII.
fn hex_dump(bytes: &[u8], full: bool) -> Vec<String> {
    let mut lines = vec![format!("binary, {}:", size(bytes.len()))];
    let shown = if full {
        bytes.len()
    } else {
        bytes.len().min(SHOWN_HEX)
    };
    for (row, chunk) in bytes[..shown].chunks(16).enumerate() {
        let mut line = format!("{:08x}: ", row * 16);
        for (i, byte) in chunk.iter().enumerate() {
            let _ = write!(line, "{byte:02x}");
            if i % 2 == 1 {
                line.push(' ');
            }
        }
        let pad = 40usize.saturating_sub(chunk.len() * 2 + chunk.len() / 2);
        line.push_str(&" ".repeat(pad + 1));
        line.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        lines.push(line);
    }
    if shown < bytes.len() {
        lines.push(format!(
            "… cut after {shown} bytes; `--full` shows all of it, `--raw` writes the bytes"
        ));
    }
    lines
}

/// `1234 bytes`, `2.0 KiB`, `3.5 MiB`.
pub fn size(bytes: usize) -> String {
    match bytes {
        n if n < 1 << 10 => format!("{n} bytes"),
        n if n < 1 << 20 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_printed_text_is_kept_and_binary_is_hex() {
        assert_eq!(render(br#"{ "a": [1, 2] }"#, false), vec![r#"{"a":[1,2]}"#]);
        let long = format!(r#"{{"a":"{}","b":1}}"#, "x".repeat(80));
        let pretty = render(long.as_bytes(), false);
        assert_eq!(pretty.len(), 4, "{pretty:?}");
        assert_eq!(pretty[2], "  \"b\": 1");
        assert_eq!(render(b"plain words", false), vec!["plain words"]);
        let binary = render(&[0xff, 0x00, b'A'], false);
        assert_eq!(binary[0], "binary, 3 bytes:");
        assert!(binary[1].starts_with("00000000: ff00 41"), "{}", binary[1]);
        assert!(binary[1].ends_with("..A"), "{}", binary[1]);
    }

    #[test]
    fn long_values_are_cut_with_a_note_unless_full() {
        let long = "line\n".repeat(100);
        let cut = render(long.as_bytes(), false);
        assert_eq!(cut.len(), SHOWN_LINES + 1);
        assert!(
            cut[SHOWN_LINES].contains("500 bytes in all"),
            "{}",
            cut[SHOWN_LINES]
        );
        assert_eq!(render(long.as_bytes(), true).len(), 100);
        let binary = vec![0u8; 1000];
        let cut = render(&binary, false);
        assert!(cut.last().unwrap().contains("cut after 256 bytes"));
        assert_eq!(render(&binary, true).len(), 1 + 1000usize.div_ceil(16));
    }
}
