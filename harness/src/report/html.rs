//! Plain HTML building blocks: escaping, tables, badges, the page frame and
//! its stylesheet. No external fonts, scripts or styles.

use crate::verdict::Validity;
use std::fmt::Write;

/// Text made safe for HTML bodies and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn verdict_word(validity: Validity) -> &'static str {
    match validity {
        Validity::Valid => "VALID",
        Validity::Invalid => "INVALID",
        Validity::Unknown => "UNKNOWN",
    }
}

/// A coloured verdict label.
pub fn badge(validity: Validity) -> String {
    let class = match validity {
        Validity::Valid => "valid",
        Validity::Invalid => "invalid",
        Validity::Unknown => "unknown",
    };
    format!("<span class=\"badge {class}\">{}</span>", verdict_word(validity))
}

/// A table from a header and rows of already-escaped cells.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut html = String::from("<table><thead><tr>");
    for cell in header {
        let _ = write!(html, "<th>{}</th>", esc(cell));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// `12.3 ms`, `1.25 s`.
pub fn ms(value: Option<f64>) -> String {
    match value {
        None => "–".into(),
        Some(ms) if ms >= 1000.0 => format!("{:.2} s", ms / 1000.0),
        Some(ms) if ms >= 10.0 => format!("{ms:.0} ms"),
        Some(ms) => format!("{ms:.1} ms"),
    }
}

/// A relative path as a URL path: every byte but unreserved ones and `/`
/// percent-encoded (folder and file names come from free text).
pub fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// A figure: an image beside the page, linked to itself, with a caption.
pub fn figure(src: &str, alt: &str, caption: &str) -> String {
    let src = esc(&url_path(src));
    format!(
        "<figure><a href=\"{src}\"><img src=\"{src}\" alt=\"{}\"></a><figcaption>{caption}</figcaption></figure>",
        esc(alt)
    )
}

/// Reports failed loads (a missing plot) on the console, where the
/// headless browser check sees them; the only script on the page.
const LOAD_CHECK: &str = "<script>addEventListener('error', function (e) { \
if (e.target && (e.target.src || e.target.href)) { console.error('failed to load ' + (e.target.src || e.target.href)); } \
}, true);</script>";

const STYLE: &str = r#"
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0 auto; max-width: 1160px; padding: 0 18px 60px; }
header { border-bottom: 1px solid #ddd; padding: 14px 0 8px; }
h1 { font-size: 24px; margin: 6px 0; } h2 { font-size: 19px; margin: 30px 0 8px; border-bottom: 1px solid #eee; } h3 { font-size: 16px; margin: 20px 0 6px; }
nav a { margin-right: 12px; font-size: 14px; }
.badge { display: inline-block; font-weight: 700; padding: 2px 10px; border-radius: 4px; color: #fff; font-size: 14px; }
.badge.valid { background: #2a9d3a; } .badge.invalid { background: #d62728; } .badge.unknown { background: #d68910; }
.big { font-size: 20px; padding: 4px 14px; vertical-align: middle; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { background: #fdecea; } tr.warn td { background: #fff4e0; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
figure { margin: 8px 0 16px; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 6px 0; }
dl.facts dt { color: #666; } dl.facts dd { margin: 0; }
.anomaly { border-left: 4px solid #d62728; padding: 2px 12px; margin: 14px 0; }
.note { color: #666; font-size: 13px; }
.key span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }
"#;

/// The whole page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style>{LOAD_CHECK}</head>\n<body>\n{body}\n</body></html>\n",
        esc(title)
    )
}
