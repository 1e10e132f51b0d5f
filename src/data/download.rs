//! HTTP(S) download into a temporary file, verified against a known digest.

use anyhow::{Context, Result, ensure};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;
use tempfile::NamedTempFile;

/// Downloads `url` into a temporary file in `dir` and returns it only if its
/// digest `D` (named `algo` in messages) equals `expected` (hex). The temporary
/// file is deleted when dropped, so a failed or rejected download leaves nothing
/// behind; callers persist or consume it.
pub(super) fn fetch_verified<D: Digest>(
    url: &str,
    dir: &Path,
    name: &str,
    expected: &str,
    algo: &str,
) -> Result<NamedTempFile> {
    eprintln!("downloading {url}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    // ureq turns HTTP error statuses (404, ...) into errors naming the status.
    let response = agent
        .get(url)
        .call()
        .with_context(|| format!("downloading {name} from {url} failed"))?;
    let progress = indicatif::ProgressBar::new(response.body().content_length().unwrap_or(0));
    progress.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress.set_message(name.to_string());
    let mut body = response.into_body().into_reader();

    // A download killed part-way leaves its `.part` file; the next one removes it.
    let mut tmp = crate::io::temp_file(dir, name, ".part")?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = body
            .read(&mut buf)
            .with_context(|| format!("downloading {name} from {url}: connection failed"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .with_context(|| format!("writing {}", tmp.path().display()))?;
        progress.inc(n as u64);
    }
    progress.finish_and_clear();
    tmp.flush()
        .with_context(|| format!("writing {}", tmp.path().display()))?;

    let actual = hex(&hasher.finalize());
    ensure!(
        actual.eq_ignore_ascii_case(expected),
        "checksum mismatch for {name} downloaded from {url}: expected {algo} {expected}, \
         got {actual}"
    );
    Ok(tmp)
}

/// Digest `D` of the file at `path`, in hex.
pub(super) fn hash_file<D: Digest + Write>(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = D::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `download` with `dir` created first (and any missing parent). If it fails, the
/// folders this call created are removed again where they are empty, so that a mistyped
/// `--data` leaves nothing behind, and the error says how to point wgcnn at data that is
/// already on the machine.
pub(super) fn into_dir<T>(
    dir: &Path,
    what: &str,
    download: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let mut created = Vec::new();
    let result = crate::io::create_dirs(dir).and_then(|c| {
        created = c;
        download()
    });
    result.map_err(|e| {
        crate::io::remove_empty(&created);
        e.context(format!(
            "downloading {what} into {} failed; if the datasets are already on this machine, \
             point --data or the WGCNN_DATA environment variable at the folder that holds \
             mnist/ and cifar-10-batches-bin/ (or pass --no-download)",
            dir.display()
        ))
    })
}
