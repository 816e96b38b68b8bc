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
        "/conn.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../web/conn.js"),
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

#[cfg(test)]
mod tests {
    use super::asset;

    /// The paths a text names after `marker` up to the closing quote (`src="/…"`, `from './…'`).
    fn named(text: &str, marker: &str, quote: char) -> Vec<String> {
        text.split(marker)
            .skip(1)
            .filter_map(|rest| rest.split(quote).next())
            .map(|p| format!("/{}", p.trim_start_matches("./").trim_start_matches('/')))
            .collect()
    }

    #[test]
    fn every_file_the_page_loads_is_served_with_its_type() {
        let page = String::from_utf8(asset("/").expect("the page").bytes.to_vec()).unwrap();
        let app = String::from_utf8(asset("/app.js").expect("app.js").bytes.to_vec()).unwrap();
        let mut wanted = named(&page, "src=\"", '"');
        wanted.extend(named(&page, "rel=\"stylesheet\" href=\"", '"'));
        wanted.extend(named(&app, "from '", '\''));
        assert_eq!(wanted, ["/app.js", "/style.css", "/conn.js"]);
        for path in wanted {
            let file = asset(&path).unwrap_or_else(|| panic!("{path} is not served"));
            let ext = path.rsplit('.').next().unwrap();
            let want = if ext == "js" {
                "text/javascript"
            } else {
                "text/css"
            };
            assert!(
                file.content_type.starts_with(want),
                "{path}: {}",
                file.content_type
            );
            assert!(!file.bytes.is_empty(), "{path} is empty");
        }
        assert!(asset("/index.html").is_some());
        assert!(asset("/../Cargo.toml").is_none());
        assert!(asset("/nothing.js").is_none());
    }
}
