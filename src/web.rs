//! The web client's files, embedded in the binary at build time (no network access at run time, no
//! build step: `web/` is served as it is).

/// One embedded file: its content type and bytes.
pub struct Asset {
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// The file served at `path`, if any (`/` is the page itself).
pub fn asset(path: &str) -> Option<Asset> {
    let (content_type, bytes): (&str, &[u8]) = match path {
        "/" | "/index.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../web/index.html"),
        ),
        "/app.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../web/app.js"),
        ),
        "/style.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../web/style.css"),
        ),
        _ => return None,
    };
    Some(Asset {
        content_type,
        bytes,
    })
}
