//! Dataset loading: MNIST (IDX files), CIFAR-10 (binary batches) and folders of
//! images, plus optional download of the official MNIST / CIFAR-10 files with
//! checksum verification.
//!
//! Every loader returns images as `f32` in `[0, 1]`, laid out NHWC (channels
//! last), and labels as class indices. Loaders validate what they read and return
//! an error naming the offending file; they never panic on bad input.

pub mod augment;
mod cifar;
mod download;
mod folder;
mod mnist;
pub mod source;

pub use cifar::{
    CIFAR10_ARCHIVE_MD5, CIFAR10_DIR, CIFAR10_TRAIN_SHA256, CIFAR10_URL, cifar10, cifar10_bytes,
    cifar10_test, download_cifar10_from, load_cifar10, load_cifar10_bytes,
};
pub use folder::load_image_folder;
pub use mnist::{
    MNIST_DIR, MNIST_SHA256, MNIST_URL, download_mnist_from, load_mnist, load_mnist_bytes, mnist,
    mnist_bytes, mnist_test,
};
pub use source::{ByteSplit, FolderOptions, ImageBytes, ImageFolder, Source, Subset};

use anyhow::{Context, Result, ensure};
use std::fmt;
use std::io::{ErrorKind, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A set of same-sized images with their labels.
///
/// Images are `f32` in `[0, 1]`, NHWC (channels last), stored back to back in
/// `images`; `labels[i]` is the class index of image `i`.
#[derive(Clone, PartialEq)]
pub struct Dataset {
    /// All pixels, `len() * height * width * channels` values.
    pub images: Vec<f32>,
    /// One class index per image, each `< class_names.len()`.
    pub labels: Vec<u32>,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Channels per pixel (1 = grey, 3 = RGB).
    pub channels: usize,
    /// Name of each class, indexed by label.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of values in one image: `height * width * channels`.
    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Pixels of image `i` (HWC). Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Copy of images `range` (with their labels); an error if the range does not
    /// lie within `0..len()`.
    pub fn subset(&self, range: Range<usize>) -> Result<Dataset> {
        ensure!(
            range.start <= range.end && range.end <= self.len(),
            "subset {}..{} is out of range for a dataset of {} images",
            range.start,
            range.end,
            self.len()
        );
        let n = self.image_len();
        // `get` rather than indexing: the fields are public, so they may disagree.
        let images = self
            .images
            .get(range.start * n..range.end * n)
            .context("dataset's image buffer is shorter than len() * image_len()")?;
        Ok(Dataset {
            images: images.to_vec(),
            labels: self.labels[range].to_vec(),
            class_names: self.class_names.clone(),
            ..*self
        })
    }

    /// Number of classes (`class_names.len()`).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
}

// Hand-written so that `{:?}` (e.g. in a failed `unwrap`) prints the shape, not
// millions of pixels.
impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("len", &self.len())
            .field("height", &self.height)
            .field("width", &self.width)
            .field("channels", &self.channels)
            .field("class_names", &self.class_names)
            .finish_non_exhaustive()
    }
}

/// A training set and a test set.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Training images.
    pub train: Dataset,
    /// Test images.
    pub test: Dataset,
}

/// The folder that holds the datasets (`mnist/`, `cifar-10-batches-bin/`).
///
/// Precedence: `flag` (the CLI's `--data`), then the `WGCNN_DATA` environment
/// variable, then the per-user cache folder (e.g. `~/.cache/wgcnn`), and `./data`
/// where the platform has no cache folder.
pub fn data_root(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("WGCNN_DATA").filter(|v| !v.is_empty()) {
        return p.into();
    }
    dirs::cache_dir()
        .map(|d| d.join("wgcnn"))
        .unwrap_or_else(|| PathBuf::from("data"))
}

/// Error for a dataset file that is not there: where we looked, and how to
/// point the program elsewhere.
fn missing(path: &Path, also: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "dataset file not found: {}{also}; point --data or the WGCNN_DATA environment \
         variable at the folder holding the datasets, or enable download",
        path.display()
    )
}

/// Reads a whole file; a missing file gives the [`missing`] error.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => missing(path, ""),
        _ => anyhow::Error::new(e).context(format!("reading {}", path.display())),
    })
}

/// Reads a file, gunzipping it if it is named `.gz` or starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = read_file(path)?;
    let named_gz = path.extension().is_some_and(|e| e == "gz");
    if !named_gz && !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    // Multi-member so files recompressed with e.g. pigz also load.
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .with_context(|| format!("{}: corrupt or truncated gzip data", path.display()))?;
    Ok(out)
}

/// Bytes to `[0, 1]`; division (not multiplication by 1/255) keeps 255 -> 1.0 exact.
fn to_unit(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes.iter().map(|&b| f32::from(b) / 255.0)
}
