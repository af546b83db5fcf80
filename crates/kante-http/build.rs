//! Compiles the web view's files (`ui/static/`, `ui/vendor/`) into the
//! crate: each is gzipped here (best compression, once per build) and
//! listed with its content type and ETag in `$OUT_DIR/ui_assets.rs`,
//! which `src/ui.rs` includes. No Node.js is needed to build or run.

use std::io::Write;
use std::path::PathBuf;

fn mime(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("ui");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut table = String::from("&[\n");
    for (dir, prefix) in [("static", ""), ("vendor", "vendor/")] {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        for path in names {
            println!("cargo:rerun-if-changed={}", path.display());
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let raw = std::fs::read(&path).unwrap();
            let gz = out.join(format!("{}{name}.gz", prefix.replace('/', "_")));
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(&raw).unwrap();
            std::fs::write(&gz, enc.finish().unwrap()).unwrap();
            let etag = sha(&raw);
            table.push_str(&format!(
                "    Asset {{ path: {:?}, mime: {:?}, raw: include_bytes!({:?}), gz: include_bytes!({:?}), etag: \"\\\"{}\\\"\" }},\n",
                format!("{prefix}{name}"),
                mime(&name),
                path.display().to_string(),
                gz.display().to_string(),
                &etag[..20],
            ));
        }
    }
    table.push(']');
    std::fs::write(out.join("ui_assets.rs"), table).unwrap();
}

fn sha(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}
