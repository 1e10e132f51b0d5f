//! CIFAR-10 binary batches: records of 3073 bytes, a label byte then the red,
//! green and blue 32x32 planes (row-major).

use super::{ByteSplit, Dataset, ImageBytes, Split, download, read_file};
use anyhow::{Context, Result, bail, ensure};
use md5::Md5;
use sha2::Sha256;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Sub-folder of the data root that holds CIFAR-10 (as unpacked from the archive).
pub const CIFAR10_DIR: &str = "cifar-10-batches-bin";

/// Where [`cifar10`] downloads the archive from.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

/// Published md5 of `cifar-10-binary.tar.gz` (no sha256 is published).
pub const CIFAR10_ARCHIVE_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

/// sha256 of the training batches, checked after unpacking (stronger than md5).
pub const CIFAR10_TRAIN_SHA256: [(&str, &str); 5] = [
    (
        "data_batch_1.bin",
        "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
    ),
    (
        "data_batch_2.bin",
        "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
    ),
    (
        "data_batch_3.bin",
        "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
    ),
    (
        "data_batch_4.bin",
        "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
    ),
    (
        "data_batch_5.bin",
        "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
    ),
];

const TRAIN: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const TEST: &str = "test_batch.bin";
const META: &str = "batches.meta.txt";
const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const RECORD: usize = 1 + 3 * PLANE;

/// Loads CIFAR-10 from `dir`, which holds `data_batch_1.bin` .. `data_batch_5.bin`,
/// `test_batch.bin` and `batches.meta.txt` (class names, one per line).
pub fn load_cifar10(dir: impl AsRef<Path>) -> Result<Split> {
    Ok(load_cifar10_bytes(dir)?.to_split())
}

/// [`load_cifar10`] as bytes: 150 MB for the training set instead of 614 MB of floats,
/// for [`Model::fit_source`](crate::model::Model::fit_source) and the other readers of a
/// [`super::Source`].
pub fn load_cifar10_bytes(dir: impl AsRef<Path>) -> Result<ByteSplit> {
    let dir = dir.as_ref();
    let class_names = read_meta(&dir.join(META))?;
    let mut train = Records::default();
    for name in TRAIN {
        read_batch(&dir.join(name), class_names.len(), &mut train)?;
    }
    let mut test = Records::default();
    read_batch(&dir.join(TEST), class_names.len(), &mut test)?;
    Ok(ByteSplit {
        train: train.into_bytes(&class_names)?,
        test: test.into_bytes(&class_names)?,
    })
}

/// [`cifar10`] as bytes (see [`load_cifar10_bytes`]).
pub fn cifar10_bytes(root: impl AsRef<Path>, download: bool) -> Result<ByteSplit> {
    let root = root.as_ref();
    let dir = fetch_missing(root, download, &[&TRAIN[..], &[TEST, META]].concat())?;
    load_cifar10_bytes(&dir)
}

/// Loads `root/cifar-10-batches-bin`. If files are missing and `download` is
/// true, first downloads [`CIFAR10_URL`], checks it against
/// [`CIFAR10_ARCHIVE_MD5`] and [`CIFAR10_TRAIN_SHA256`], and unpacks it into `root`.
pub fn cifar10(root: impl AsRef<Path>, download: bool) -> Result<Split> {
    let root = root.as_ref();
    let dir = fetch_missing(root, download, &[&TRAIN[..], &[TEST, META]].concat())?;
    load_cifar10(&dir)
}

/// Like [`cifar10`], the test set only: the training batches are not read (and are
/// downloaded only when the test batch is missing too, since they come in one archive).
pub fn cifar10_test(root: impl AsRef<Path>, download: bool) -> Result<Dataset> {
    let root = root.as_ref();
    let dir = fetch_missing(root, download, &[TEST, META])?;
    let class_names = read_meta(&dir.join(META))?;
    let mut test = Records::default();
    read_batch(&dir.join(TEST), class_names.len(), &mut test)?;
    Ok(test.into_bytes(&class_names)?.to_dataset())
}

/// `root/cifar-10-batches-bin`, after downloading the archive when `download` is on and
/// any of `needed` is missing.
fn fetch_missing(root: &Path, download: bool, needed: &[&str]) -> Result<PathBuf> {
    let dir = root.join(CIFAR10_DIR);
    if download && !needed.iter().all(|f| dir.join(f).is_file()) {
        download_cifar10_from(
            CIFAR10_URL,
            root,
            CIFAR10_ARCHIVE_MD5,
            &CIFAR10_TRAIN_SHA256,
        )?;
    }
    Ok(dir)
}

/// Downloads the CIFAR-10 binary archive from `url`, checks its md5
/// (`archive_md5`, hex), unpacks it into a staging folder inside `root`, checks
/// the members listed in `members_sha256` (file name, sha256 hex), and only then
/// moves `cifar-10-batches-bin/` into `root`. Nothing is left behind on failure.
/// Public so tests and mirrors can supply their own URL and checksums; [`cifar10`]
/// uses the official ones.
pub fn download_cifar10_from(
    url: &str,
    root: &Path,
    archive_md5: &str,
    members_sha256: &[(&str, &str)],
) -> Result<()> {
    download::into_dir(root, "CIFAR-10", || {
        download_cifar10_into(url, root, archive_md5, members_sha256)
    })
}

fn download_cifar10_into(
    url: &str,
    root: &Path,
    archive_md5: &str,
    members_sha256: &[(&str, &str)],
) -> Result<()> {
    let archive =
        download::fetch_verified::<Md5>(url, root, "cifar-10-binary.tar.gz", archive_md5, "md5")?;

    // Staging inside `root` keeps the final renames on one filesystem; the
    // TempDir removes itself (and anything unverified) when dropped.
    let staging = tempfile::Builder::new()
        .prefix(".cifar-10-unpack.")
        .tempdir_in(root)
        .with_context(|| format!("creating a temporary folder in {}", root.display()))?;
    let file = File::open(archive.path())
        .with_context(|| format!("opening {}", archive.path().display()))?;
    // `unpack` refuses entries that would land outside the staging folder.
    tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)))
        .unpack(staging.path())
        .with_context(|| format!("unpacking the archive from {url}"))?;

    let unpacked = staging.path().join(CIFAR10_DIR);
    for name in TRAIN.iter().chain([&TEST, &META]) {
        ensure!(
            unpacked.join(name).is_file(),
            "the archive from {url} has no {CIFAR10_DIR}/{name}"
        );
    }
    for (name, expected) in members_sha256 {
        let actual = download::hash_file::<Sha256>(&unpacked.join(name))?;
        ensure!(
            actual.eq_ignore_ascii_case(expected),
            "checksum mismatch for {name} in the archive from {url}: expected sha256 \
             {expected}, got {actual}"
        );
    }

    // Move file by file: the destination may already hold some of the files.
    let dest = root.join(CIFAR10_DIR);
    std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
    for entry in std::fs::read_dir(&unpacked)? {
        let entry = entry?;
        let to = dest.join(entry.file_name());
        std::fs::rename(entry.path(), &to)
            .with_context(|| format!("moving {} into place", to.display()))?;
    }
    Ok(())
}

/// The records of the batch files read so far: HWC bytes and labels.
#[derive(Default)]
struct Records {
    pixels: Vec<u8>,
    labels: Vec<u32>,
}

impl Records {
    fn into_bytes(self, class_names: &[String]) -> Result<ImageBytes> {
        ImageBytes::new(
            self.pixels,
            self.labels,
            [SIDE, SIDE, 3],
            class_names.to_vec(),
        )
    }
}

/// Class names, one per line; blank lines (e.g. the trailing one) are skipped.
fn read_meta(path: &Path) -> Result<Vec<String>> {
    let bytes = read_file(path)?;
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("{}: class names are not valid UTF-8", path.display()))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    ensure!(!names.is_empty(), "{}: no class names", path.display());
    Ok(names)
}

/// Appends the records of one batch file to `out`, converting planar RGB to HWC.
fn read_batch(path: &Path, classes: usize, out: &mut Records) -> Result<()> {
    let bytes = read_file(path)?;
    ensure!(
        !bytes.is_empty() && bytes.len() % RECORD == 0,
        "{}: truncated or corrupt: {} bytes is not a whole, non-zero number of \
         {RECORD}-byte CIFAR records",
        path.display(),
        bytes.len()
    );
    let count = bytes.len() / RECORD;
    out.labels.reserve(count);
    out.pixels.reserve(count * 3 * PLANE);
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        let label = record[0];
        if usize::from(label) >= classes {
            bail!(
                "{}: label {label} of record {i} is out of range ({META} names {classes} classes)",
                path.display(),
            );
        }
        out.labels.push(u32::from(label));
        let (r, gb) = record[1..].split_at(PLANE);
        let (g, b) = gb.split_at(PLANE);
        for p in 0..PLANE {
            out.pixels.extend([r[p], g[p], b[p]]);
        }
    }
    Ok(())
}
