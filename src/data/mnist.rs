//! MNIST in the IDX format: big-endian u32 header, then one byte per pixel/label.

use super::{ByteSplit, Dataset, ImageBytes, Source, Split, download, read_maybe_gz};
use anyhow::{Context, Result, bail, ensure};
use sha2::Sha256;
use std::path::{Path, PathBuf};

/// Sub-folder of the data root that holds MNIST.
pub const MNIST_DIR: &str = "mnist";

/// Where [`mnist`] downloads the four `.gz` files from.
pub const MNIST_URL: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";

/// The official MNIST files and their sha256.
pub const MNIST_SHA256: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
];

const IMAGES_MAGIC: u32 = 2051;
const LABELS_MAGIC: u32 = 2049;
const CLASSES: usize = 10;

/// Loads MNIST from `dir`, which holds the four IDX files either gzipped as
/// distributed (`train-images-idx3-ubyte.gz`, ...) or unpacked (same names
/// without `.gz`; these win when both exist).
pub fn load_mnist(dir: impl AsRef<Path>) -> Result<Split> {
    Ok(load_mnist_bytes(dir)?.to_split())
}

/// [`load_mnist`] as bytes: a quarter of the memory, for
/// [`Model::fit_source`](crate::model::Model::fit_source) and the other readers of a
/// [`super::Source`].
pub fn load_mnist_bytes(dir: impl AsRef<Path>) -> Result<ByteSplit> {
    let dir = dir.as_ref();
    let train = load_part(dir, "train")?;
    let test = load_part(dir, "t10k")?;
    let ([th, tw, _], [eh, ew, _]) = (train.shape(), test.shape());
    ensure!(
        (th, tw) == (eh, ew),
        "MNIST in {}: training images are {th}x{tw} but test images are {eh}x{ew}",
        dir.display(),
    );
    Ok(ByteSplit { train, test })
}

/// Loads `root/mnist`. If files are missing and `download` is true, first fetches
/// the missing ones from [`MNIST_URL`], checking each against [`MNIST_SHA256`].
pub fn mnist(root: impl AsRef<Path>, download: bool) -> Result<Split> {
    Ok(mnist_bytes(root, download)?.to_split())
}

/// [`mnist`] as bytes (see [`load_mnist_bytes`]).
pub fn mnist_bytes(root: impl AsRef<Path>, download: bool) -> Result<ByteSplit> {
    let root = root.as_ref();
    let dir = fetch_missing(root, download, "")?;
    load_mnist_bytes(&dir)
}

/// Like [`mnist`], the test set only: the training files are neither read nor
/// downloaded (what `wgcnn eval` needs).
pub fn mnist_test(root: impl AsRef<Path>, download: bool) -> Result<Dataset> {
    let root = root.as_ref();
    let dir = fetch_missing(root, download, "t10k")?;
    Ok(load_part(&dir, "t10k")?.to_dataset())
}

/// `root/mnist`, after downloading its missing files whose names start with `prefix`
/// (all of them for "") when `download` is on.
fn fetch_missing(root: &Path, download: bool, prefix: &str) -> Result<PathBuf> {
    let dir = root.join(MNIST_DIR);
    if download {
        let absent: Vec<(&str, &str)> = MNIST_SHA256
            .into_iter()
            .filter(|(gz, _)| gz.starts_with(prefix))
            .filter(|(gz, _)| find(&dir, gz.trim_end_matches(".gz")).is_err())
            .collect();
        if !absent.is_empty() {
            download_mnist_from(MNIST_URL, &dir, &absent)?;
        }
    }
    Ok(dir)
}

/// Downloads `files` (name, expected sha256 in hex) from `base_url` + name into
/// `dir`. Each file is written to a temporary file and renamed into place only
/// once its checksum matches. Public so tests and mirrors can supply their own
/// URL and checksums; [`mnist`] uses [`MNIST_URL`] and [`MNIST_SHA256`].
pub fn download_mnist_from(
    base_url: &str,
    dir: impl AsRef<Path>,
    files: &[(&str, &str)],
) -> Result<()> {
    let dir = dir.as_ref();
    download::into_dir(dir, "MNIST", || {
        for (name, sha256) in files {
            let url = format!("{}/{name}", base_url.trim_end_matches('/'));
            let tmp = download::fetch_verified::<Sha256>(&url, dir, name, sha256, "sha256")?;
            let dest = dir.join(name);
            tmp.persist(&dest)
                .with_context(|| format!("moving the download into {}", dest.display()))?;
        }
        Ok(())
    })
}

/// Path of IDX file `name`, unpacked or `.gz`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if plain.is_file() {
        Ok(plain)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(super::missing(&gz, " (nor its unpacked form without .gz)"))
    }
}

fn load_part(dir: &Path, prefix: &str) -> Result<ImageBytes> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;

    let images = read_maybe_gz(&images_path)?;
    let (dims, pixels) = parse_idx(&images, IMAGES_MAGIC, 3, &images_path)?;
    let (count, height, width) = (dims[0], dims[1], dims[2]);

    let labels = read_maybe_gz(&labels_path)?;
    let (label_dims, labels) = parse_idx(&labels, LABELS_MAGIC, 1, &labels_path)?;
    ensure!(
        label_dims[0] == count,
        "image/label count mismatch: {} has {count} images but {} has {} labels",
        images_path.display(),
        labels_path.display(),
        label_dims[0]
    );
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, l)| usize::from(**l) >= CLASSES)
    {
        bail!(
            "{}: label {l} of item {i} is out of range (MNIST has {CLASSES} classes)",
            labels_path.display()
        );
    }

    ImageBytes::new(
        pixels.to_vec(),
        labels.iter().map(|&l| u32::from(l)).collect(),
        [height, width, 1],
        (0..CLASSES).map(|d| d.to_string()).collect(),
    )
}

/// Checks an IDX file's magic and that its size matches the header; returns the
/// `ndims` dimensions and the data bytes.
fn parse_idx<'a>(
    bytes: &'a [u8],
    magic: u32,
    ndims: usize,
    path: &Path,
) -> Result<(Vec<usize>, &'a [u8])> {
    let header_len = 4 * (1 + ndims);
    let word = |i: usize| {
        let b = bytes.get(4 * i..4 * i + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    // Magic first, so that a wrong kind of file is reported as such.
    let kind = if magic == IMAGES_MAGIC {
        "image"
    } else {
        "label"
    };
    match word(0) {
        Some(found) => ensure!(
            found == magic as usize,
            "{}: wrong magic number {found} (expected {magic}); not an IDX {kind} file",
            path.display()
        ),
        None => bail!("{}: truncated: no IDX header", path.display()),
    }
    ensure!(
        bytes.len() >= header_len,
        "{}: truncated: {} bytes is shorter than the {header_len}-byte IDX header",
        path.display(),
        bytes.len()
    );
    let dims: Vec<usize> = (1..=ndims).filter_map(word).collect(); // all present: checked above
    if ndims > 1 {
        ensure!(
            dims[1..].iter().all(|&d| d > 0),
            "{}: image size {:?} has a zero dimension",
            path.display(),
            &dims[1..]
        );
    }
    // u64 and checked: a corrupt header may claim absurd sizes; never allocate or
    // overflow on its word.
    let data_len = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    let actual = (bytes.len() - header_len) as u64;
    ensure!(
        actual >= data_len,
        "{}: truncated: header {dims:?} needs {data_len} data bytes, file has {actual}",
        path.display()
    );
    ensure!(
        actual == data_len,
        "{}: {} unexpected bytes after the data the header {dims:?} describes",
        path.display(),
        actual - data_len
    );
    Ok((dims, &bytes[header_len..]))
}
