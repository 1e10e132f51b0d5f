//! Files that are never half-written: every file wgcnn writes (weights, model files, run
//! reports, histories, pictures, downloads) goes to a temporary file in the destination's
//! folder, is flushed to disk, and is renamed over the destination. A crash, a full disk
//! or an error part-way leaves the previous file as it was.
//!
//! A temporary file is named `.NAME.XXXXXX.tmp` and is locked (an advisory lock) while it
//! is written. A process killed mid-write leaves its temporary file behind, unlocked: the
//! next write of the same target removes it. Finished files get the mode an ordinary
//! write would give them (0666 less the umask), not the private 0600 of a temporary file.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use tempfile::NamedTempFile;

/// Writes `bytes` to `path` atomically (see the module docs), creating its folder.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| {
        w.write_all(bytes)?;
        Ok(())
    })
}

/// Like [`write_atomic`], with the contents written by `fill`; if `fill` fails, `path` is
/// left untouched.
pub fn write_atomic_with(
    path: impl AsRef<Path>,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let path = path.as_ref();
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = temp_file(dir, &name, ".tmp")?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut w).with_context(|| format!("writing {}", path.display()))?;
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("flushing {} to disk", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the new {} into place", path.display()))?;
    Ok(())
}

/// Creates `dir` and its missing parents; returns the folders it created, deepest first
/// (for [`remove_empty`] to undo).
pub(crate) fn create_dirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut created = Vec::new();
    let mut missing = Some(dir);
    while let Some(d) = missing.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        created.push(d.to_path_buf());
        missing = d.parent();
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(created)
}

/// Removes those of `dirs` (deepest first) that are empty: what a failed step created.
pub(crate) fn remove_empty(dirs: &[std::path::PathBuf]) {
    for d in dirs {
        let _ = std::fs::remove_dir(d); // fails, harmlessly, on a folder with files
    }
}

/// The folder a file lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    }
}

/// Length of tempfile's random part of a name.
const RANDOM_LEN: usize = 6;

/// A new, locked temporary file `.NAME.XXXXXX<suffix>` in `dir` with the mode of an
/// ordinary new file, after removing the stale ones of the same target (those no live
/// writer holds locked). The caller persists it over the target, or drops it.
pub(crate) fn temp_file(dir: &Path, name: &str, suffix: &str) -> Result<NamedTempFile> {
    remove_stale(dir, name, suffix);
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder
        .prefix(&prefix)
        .suffix(suffix)
        .rand_bytes(RANDOM_LEN);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Passed to open(2), so the umask applies as for any new file.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    // Held until the file is persisted or dropped; the kernel drops it if we die.
    tmp.as_file()
        .try_lock()
        .with_context(|| format!("locking {}", tmp.path().display()))?;
    Ok(tmp)
}

/// Removes `dir`'s temporary files of target `name` that nobody holds locked: leftovers
/// of killed writes. Best effort: what cannot be read or removed stays.
fn remove_stale(dir: &Path, name: &str, suffix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(random) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|f| f.strip_suffix(suffix))
        else {
            continue;
        };
        // Exactly tempfile's random part: `.a.b.XXXXXX.tmp` belongs to `a.b`, not `a`.
        if random.len() != RANDOM_LEN || !random.chars().all(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporary_files_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("model.safetensors");
        // A killed writer's file (unlocked), a live writer's (locked), another target's.
        let stale = dir.path().join(".model.safetensors.AbC123.tmp");
        std::fs::write(&stale, b"half").unwrap();
        let live = temp_file(dir.path(), "model.safetensors", ".tmp").unwrap();
        let other = dir.path().join(".model.safetensors.bak.XyZ789.tmp");
        std::fs::write(&other, b"other target").unwrap();
        write_atomic(&target, b"whole").unwrap();
        assert!(!stale.exists(), "the stale temporary file is still there");
        assert!(live.path().exists(), "a live writer's file was removed");
        assert!(
            other.exists(),
            "another target's temporary file was removed"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
    }
}
