//! Data sets read sample by sample (PyTorch's map-style `Dataset`, Keras' `PyDataset`):
//! anything that can say its length and produce sample `i` as bytes. `fit`, `evaluate`
//! and `predict` take one through [`Model::fit_source`](crate::model::Model::fit_source)
//! and its siblings, in batches that a pool of worker threads decodes ahead of the GPU
//! (PyTorch's `num_workers` and `prefetch_factor`), so no copy of the whole data set is
//! ever held in memory.
//!
//! ```no_run
//! use wgcnn::data::{FolderOptions, ImageFolder, Source, Subset};
//! # fn main() -> anyhow::Result<()> {
//! // Keras' image_dataset_from_directory(dir, validation_split=0.2, subset=…, seed=1337,
//! // image_size=(64, 64)).
//! let opts = FolderOptions::new(64, 64).validation_split(0.2, 1337);
//! let train = ImageFolder::open("photos", &opts.clone().subset(Subset::Training))?;
//! let val = ImageFolder::open("photos", &opts.subset(Subset::Validation))?;
//! println!("{} training and {} validation images of {:?}", train.len(), val.len(), train.class_names());
//! # Ok(()) }
//! ```

use super::augment::{Draw, FillMode};
use super::{Dataset, folder};
use crate::model::Targets;
use anyhow::{Context, Result, bail, ensure};
use image::imageops::FilterType;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, mpsc};

/// A data set of images read one at a time, each with a class label, one class label per
/// output position (`labels_per_sample` > 1: a segmentation's mask) or a vector of target
/// values (`target_len` > 0). Implement it for your own storage;
/// [`ImageFolder`] reads a folder of PNG and JPEG files, [`ImageBytes`] holds bytes in
/// memory (MNIST and CIFAR-10 as [`Dataset::to_bytes`] gives them).
pub trait Source: Sync + std::fmt::Debug {
    /// How many samples there are.
    fn len(&self) -> usize;

    /// True when there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (height, width, channels) of every sample.
    fn shape(&self) -> [usize; 3];

    /// Writes sample `index` into `pixels` (height × width × channels bytes, row-major,
    /// channels last; 0–255, scaled to [0, 1] on the way to the model) and returns its
    /// class. An unreadable sample is an error naming it.
    fn load(&self, index: usize, pixels: &mut [u8]) -> Result<u32>;

    /// The class names, indexed by label.
    fn class_names(&self) -> Vec<String>;

    /// Class labels per sample: 1, the default (the class `load` returns), or one per
    /// output position of a per-pixel classifier (a segmentation's mask), which
    /// `load_labels` writes.
    fn labels_per_sample(&self) -> usize {
        1
    }

    /// Writes sample `index`'s `labels_per_sample()` class labels into `labels`. Called
    /// only when `labels_per_sample()` is above 1 (`load`'s class is then ignored).
    fn load_labels(&self, index: usize, labels: &mut [u32]) -> Result<()> {
        let _ = (index, labels);
        bail!("this data set has one class label per sample")
    }

    /// Target values per sample, for a model whose loss takes values (a regression's
    /// numbers, a denoiser's or a segmenter's image as floats): 0, the default, for a data
    /// set of class labels, whose `load` gives each sample's class.
    fn target_len(&self) -> usize {
        0
    }

    /// Writes sample `index`'s `target_len()` target values into `target`. Called only
    /// when `target_len()` is positive (`load`'s class is then ignored).
    fn load_target(&self, index: usize, target: &mut [f32]) -> Result<()> {
        let _ = (index, target);
        bail!("this data set has class labels, not target values")
    }
}

/// Images as bytes in memory, with their labels: a quarter of the `f32` copy.
///
/// ```
/// use wgcnn::data::{ImageBytes, Source};
/// use wgcnn::prelude::*;
/// # fn main() -> anyhow::Result<()> {
/// // Two 2×2 grey images, classes "dark" and "light".
/// let names = vec!["dark".to_string(), "light".to_string()];
/// let data = ImageBytes::new(vec![10, 20, 30, 40, 200, 210, 220, 230], vec![0, 1], [2, 2, 1], names)?;
/// let mut model = Sequential::new();
/// model.add(Flatten::new().input_shape(&[2, 2, 1]))?;
/// model.add(Dense::new(2).activation(Softmax))?;
/// model.set_device(Device::Cpu);
/// model.compile(Optimizer::adam(), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy])?;
/// let fit = FitConfig { epochs: 2, batch_size: 2, verbose: false, ..Default::default() };
/// model.fit_source(&data, &fit)?;
/// let probabilities = model.predict_source(&data, 2, 0)?;
/// assert_eq!(probabilities.len(), 2 * 2);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ImageBytes {
    pixels: Vec<u8>,
    labels: Vec<u32>,
    shape: [usize; 3],
    class_names: Vec<String>,
    /// Target values, `target_len` per image (none for a labelled set).
    values: Vec<f32>,
    target_len: usize,
    /// Class labels per image (1, or a mask's positions).
    labels_per: usize,
}

impl ImageBytes {
    /// `labels.len()` images of `shape` back to back in `pixels`.
    pub fn new(
        pixels: Vec<u8>,
        labels: Vec<u32>,
        shape: [usize; 3],
        class_names: Vec<String>,
    ) -> Result<ImageBytes> {
        let per: usize = shape.iter().product();
        ensure!(per > 0, "images of shape {shape:?} hold nothing");
        ensure!(
            Some(pixels.len()) == labels.len().checked_mul(per),
            "{} bytes are not {} images of {shape:?}",
            pixels.len(),
            labels.len()
        );
        check_labels(&labels, class_names.len())?;
        Ok(ImageBytes {
            pixels,
            labels,
            shape,
            class_names,
            values: Vec::new(),
            target_len: 0,
            labels_per: 1,
        })
    }

    /// Images of `shape` back to back in `pixels` with `labels.len() / images` class
    /// labels each: a per-pixel classifier's masks (a segmentation's), row-major.
    pub fn with_masks(
        pixels: Vec<u8>,
        labels: Vec<u32>,
        shape: [usize; 3],
        class_names: Vec<String>,
    ) -> Result<ImageBytes> {
        let n = image_count(&pixels, shape)?;
        let labels_per = per_image(labels.len(), n, "labels")?;
        check_labels(&labels, class_names.len())?;
        Ok(ImageBytes {
            pixels,
            labels_per,
            labels,
            shape,
            class_names,
            values: Vec::new(),
            target_len: 0,
        })
    }

    /// Images of `shape` back to back in `pixels` with `values.len() / images` target
    /// values each (Keras' `fit(x, y)` with float `y`): a regression's numbers, or a
    /// denoiser's clean image.
    ///
    /// ```
    /// use wgcnn::data::{ImageBytes, Source};
    /// use wgcnn::prelude::*;
    /// # fn main() -> anyhow::Result<()> {
    /// // Two 2×2 grey images and the brightness a model is to predict for each.
    /// let data = ImageBytes::with_values(vec![0, 0, 0, 0, 255, 255, 255, 255], vec![0.0, 1.0], [2, 2, 1])?;
    /// assert_eq!(data.target_len(), 1);
    /// let mut model = Sequential::new();
    /// model.add(Flatten::new().input_shape(&[2, 2, 1]))?;
    /// model.add(Dense::new(1))?;
    /// model.set_device(Device::Cpu);
    /// model.compile(Optimizer::sgd(0.1), Loss::MeanSquaredError, &[Metric::MeanAbsoluteError])?;
    /// let fit = FitConfig { epochs: 2, batch_size: 2, verbose: false, ..Default::default() };
    /// model.fit_source(&data, &fit)?;
    /// assert_eq!(model.predict_source(&data, 2, 0)?.len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn with_values(pixels: Vec<u8>, values: Vec<f32>, shape: [usize; 3]) -> Result<ImageBytes> {
        let n = image_count(&pixels, shape)?;
        let target_len = per_image(values.len(), n, "target values")?;
        Ok(ImageBytes {
            pixels,
            labels: vec![0; n],
            shape,
            class_names: Vec::new(),
            target_len,
            values,
            labels_per: 1,
        })
    }
}

/// How many whole images of `shape` `pixels` holds (at least one).
fn image_count(pixels: &[u8], shape: [usize; 3]) -> Result<usize> {
    let per: usize = shape.iter().product();
    ensure!(per > 0, "images of shape {shape:?} hold nothing");
    ensure!(
        pixels.len().is_multiple_of(per) && !pixels.is_empty(),
        "{} bytes are not whole images of {shape:?}",
        pixels.len()
    );
    Ok(pixels.len() / per)
}

/// How many of `len` targets (`what`) each of `n` images has: they must divide evenly.
fn per_image(len: usize, n: usize, what: &str) -> Result<usize> {
    ensure!(
        len > 0 && len.is_multiple_of(n),
        "{len} {what} do not divide among {n} images"
    );
    Ok(len / n)
}

/// Every label must name one of the `classes` classes.
fn check_labels(labels: &[u32], classes: usize) -> Result<()> {
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
        bail!("label {bad} is not one of the {classes} classes");
    }
    Ok(())
}

impl ImageBytes {
    /// The same images as floats b / 255 (as every loader computes them).
    pub fn to_dataset(&self) -> Dataset {
        let [height, width, channels] = self.shape;
        Dataset {
            images: super::to_unit(&self.pixels).collect(),
            labels: self.labels.clone(),
            height,
            width,
            channels,
            class_names: self.class_names.clone(),
        }
    }
}

/// A training set and a test set, as bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct ByteSplit {
    /// Training images.
    pub train: ImageBytes,
    /// Test images.
    pub test: ImageBytes,
}

impl ByteSplit {
    /// Both sets as floats.
    pub fn to_split(&self) -> super::Split {
        super::Split {
            train: self.train.to_dataset(),
            test: self.test.to_dataset(),
        }
    }
}

impl Source for ImageBytes {
    fn len(&self) -> usize {
        self.labels.len() / self.labels_per
    }

    fn shape(&self) -> [usize; 3] {
        self.shape
    }

    fn load(&self, index: usize, pixels: &mut [u8]) -> Result<u32> {
        let per = pixels.len();
        let src = self
            .pixels
            .get(index * per..(index + 1) * per)
            .with_context(|| format!("image {index} of {}", self.len()))?;
        pixels.copy_from_slice(src);
        Ok(self.labels[index * self.labels_per])
    }

    fn class_names(&self) -> Vec<String> {
        self.class_names.clone()
    }

    fn labels_per_sample(&self) -> usize {
        self.labels_per
    }

    fn load_labels(&self, index: usize, labels: &mut [u32]) -> Result<()> {
        let per = self.labels_per;
        let src = self
            .labels
            .get(index * per..(index + 1) * per)
            .with_context(|| format!("labels of image {index} of {}", self.len()))?;
        labels.copy_from_slice(src);
        Ok(())
    }

    fn target_len(&self) -> usize {
        self.target_len
    }

    fn load_target(&self, index: usize, target: &mut [f32]) -> Result<()> {
        let per = self.target_len;
        ensure!(per > 0, "this data set has class labels, not target values");
        let src = self
            .values
            .get(index * per..(index + 1) * per)
            .with_context(|| format!("targets of image {index} of {}", self.len()))?;
        target.copy_from_slice(src);
        Ok(())
    }
}

impl Dataset {
    /// The same images as bytes (what [`Source`]s hold): exact for 8-bit data such as
    /// MNIST, CIFAR-10 and decoded image files, whose values are k / 255; other values
    /// are an error.
    pub fn to_bytes(&self) -> Result<ImageBytes> {
        let mut pixels = Vec::with_capacity(self.images.len());
        for (i, &v) in self.images.iter().enumerate() {
            let b = (v * 255.0).round();
            ensure!(
                (0.0..=255.0).contains(&b) && f32::from(b as u8) / 255.0 == v,
                "value {v} of image {} is not a byte / 255",
                i / self.image_len().max(1)
            );
            pixels.push(b as u8);
        }
        ImageBytes::new(
            pixels,
            self.labels.clone(),
            [self.height, self.width, self.channels],
            self.class_names.clone(),
        )
    }
}

/// How [`ImageFolder::open`] reads a folder (Keras' `image_dataset_from_directory`
/// arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct FolderOptions {
    /// (height, width) every image is resized to (bilinear, aspect not kept; Keras'
    /// default 256 × 256).
    pub image_size: (u32, u32),
    /// Channels: 1 grey, 3 RGB (Keras' default), 4 RGBA.
    pub channels: usize,
    /// The fraction held out for validation, and the seed of the shuffle that picks it
    /// (Keras: shuffle the files with `seed`, the last `fraction` validate).
    pub validation_split: Option<(f32, u64)>,
    /// Which side of the split this is.
    pub subset: Subset,
}

/// The side of a validation split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subset {
    /// The images not held out (Keras' `subset="training"`; all of them without a split).
    Training,
    /// The held-out images (Keras' `subset="validation"`).
    Validation,
}

impl FolderOptions {
    /// Images resized to `height` × `width`, RGB, no split.
    pub fn new(height: u32, width: u32) -> FolderOptions {
        FolderOptions {
            image_size: (height, width),
            channels: 3,
            validation_split: None,
            subset: Subset::Training,
        }
    }

    /// Keras' `color_mode`: "grayscale" (1), "rgb" (3) or "rgba" (4).
    pub fn color_mode(mut self, mode: &str) -> Result<FolderOptions> {
        self.channels = match mode {
            "grayscale" => 1,
            "rgb" => 3,
            "rgba" => 4,
            other => bail!("color_mode '{other}': expected grayscale, rgb or rgba"),
        };
        Ok(self)
    }

    /// Holds `fraction` of the images out for validation, picked by a shuffle from `seed`.
    pub fn validation_split(mut self, fraction: f32, seed: u64) -> FolderOptions {
        self.validation_split = Some((fraction, seed));
        self
    }

    /// The training or validation side of the split.
    pub fn subset(mut self, subset: Subset) -> FolderOptions {
        self.subset = subset;
        self
    }
}

/// A folder with one sub-folder of images per class (Keras'
/// `image_dataset_from_directory`): labels from the sub-folders' names in sorted order,
/// `.png`, `.jpg` and `.jpeg` files listed up front (others skipped and counted) and
/// decoded only when a batch needs them, resized to the options' size.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    files: Vec<(PathBuf, u32)>,
    class_names: Vec<String>,
    shape: [usize; 3],
    skipped: usize,
}

impl ImageFolder {
    /// Lists `dir/<class>/<file>` (names starting with `.` skipped) as `opts` says.
    pub fn open(dir: impl AsRef<Path>, opts: &FolderOptions) -> Result<ImageFolder> {
        let dir = dir.as_ref();
        let (h, w) = opts.image_size;
        ensure!(h > 0 && w > 0, "image size {h}x{w} has a zero dimension");
        ensure!(
            matches!(opts.channels, 1 | 3 | 4),
            "{} channels: images load as 1 (grey), 3 (RGB) or 4 (RGBA)",
            opts.channels
        );
        let classes = folder::sorted_entries(dir, true)?;
        ensure!(
            !classes.is_empty(),
            "{}: no class sub-folders (expected one folder of images per class)",
            dir.display()
        );
        let mut files = Vec::new();
        let mut skipped = 0;
        for (label, class_dir) in (0u32..).zip(&classes) {
            for path in folder::sorted_entries(class_dir, false)? {
                // Keras' rule: only image files count (a Thumbs.db or a README beside
                // them would otherwise fail an epoch hours in).
                let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
                if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
                    files.push((path, label));
                } else {
                    skipped += 1;
                }
            }
        }
        ensure!(
            !files.is_empty(),
            "{}: no images in any class folder",
            dir.display()
        );
        if let Some((fraction, seed)) = opts.validation_split {
            ensure!(
                fraction > 0.0 && fraction < 1.0,
                "validation_split {fraction} must be in (0, 1)"
            );
            files.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            let held = (fraction * files.len() as f32) as usize;
            let cut = files.len() - held;
            files = match opts.subset {
                Subset::Training => files[..cut].to_vec(),
                Subset::Validation => files[cut..].to_vec(),
            };
            ensure!(
                !files.is_empty(),
                "{}: the {:?} side of a {fraction} split is empty",
                dir.display(),
                opts.subset
            );
        }
        let class_names = folder::names_of(&classes);
        Ok(ImageFolder {
            files,
            class_names,
            shape: [h as usize, w as usize, opts.channels],
            skipped,
        })
    }

    /// The image files with their labels, in the data set's order.
    pub fn files(&self) -> &[(PathBuf, u32)] {
        &self.files
    }

    /// Files in the class folders that were left out for not being `.png`, `.jpg` or
    /// `.jpeg` (any case), as Keras leaves out what is not an image (both sides of a split).
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

impl Source for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn shape(&self) -> [usize; 3] {
        self.shape
    }

    fn load(&self, index: usize, pixels: &mut [u8]) -> Result<u32> {
        let (path, label) = self
            .files
            .get(index)
            .with_context(|| format!("image {index} of {}", self.files.len()))?;
        let [h, w, c] = self.shape;
        let mut img = folder::decode(path)?;
        if (img.height() as usize, img.width() as usize) != (h, w) {
            img = img.resize_exact(w as u32, h as u32, FilterType::Triangle);
        }
        let bytes = match c {
            1 => img.into_luma8().into_raw(),
            3 => img.into_rgb8().into_raw(),
            _ => img.into_rgba8().into_raw(),
        };
        ensure!(
            bytes.len() == pixels.len(),
            "{}: decoded to {} bytes, expected {}",
            path.display(),
            bytes.len(),
            pixels.len()
        );
        pixels.copy_from_slice(&bytes);
        Ok(*label)
    }

    fn class_names(&self) -> Vec<String> {
        self.class_names.clone()
    }
}

/// One batch as it travels to the model: the images' bytes (augmented), labels. The GPU
/// (or, on the CPU path, the host) turns the bytes into b / 255.
#[derive(Default)]
struct Batch {
    x: Vec<u8>,
    y: Vec<u32>,
    /// Target values, when the source has them instead of classes.
    v: Vec<f32>,
    /// With the draws left to the GPU: each image's (flip, dy, dx, 0) and the fill.
    draws: Vec<[i32; 4]>,
    fill: FillMode,
}

impl Batch {
    /// The batch's targets: its values if the source gives them, else its classes.
    fn targets(&self, values: bool) -> Targets<'_> {
        if values {
            Targets::Values(&self.v)
        } else {
            Targets::Classes(&self.y)
        }
    }

    /// The draws the GPU is to apply, if any.
    fn gpu_draws(&self) -> Option<(&[[i32; 4]], FillMode)> {
        (!self.draws.is_empty()).then_some((&self.draws[..], self.fill))
    }
}

/// A batch's draws for the GPU: each image's (flip, dy, dx, 0), and the fill.
pub(crate) type GpuDraws<'a> = Option<(&'a [[i32; 4]], FillMode)>;

/// On drop (also while unwinding), tells the loader's workers to stop and wakes those
/// waiting for the prefetch window. The flag is set under the window's lock, so a worker
/// cannot check it and then sleep through the wake-up.
struct StopGuard<'a> {
    stop: &'a AtomicBool,
    consumed: &'a (Mutex<usize>, Condvar),
    /// A worker's guard acts only when its thread panics: a worker that simply runs out
    /// of steps must not stop the others, which may still hold steps to deliver.
    only_on_panic: bool,
}

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        if self.only_on_panic && !std::thread::panicking() {
            return;
        }
        let lock = self.consumed.0.lock();
        self.stop.store(true, Ordering::SeqCst);
        drop(lock);
        self.consumed.1.notify_all();
    }
}

/// Reads batches of a [`Source`] with `workers` threads, each at most `prefetch` batches
/// ahead of the training loop; `workers == 0` reads in the caller's thread. Batches come
/// in order and hold the same values whatever the number of workers.
pub(crate) struct Loader<'a> {
    source: &'a dyn Source,
    workers: usize,
    prefetch: usize,
    /// Labels must be below this (the source's class count).
    classes: usize,
    /// Images read and the nanoseconds the readers spent on them.
    images: AtomicUsize,
    busy_nanos: AtomicU64,
    /// Leave the flips and shifts to the GPU (handed to `consume`) instead of applying them.
    gpu_draws: bool,
    /// The shape of image or mask targets that flips and shifts move with their inputs.
    target_shape: Option<[usize; 3]>,
}

impl<'a> Loader<'a> {
    pub fn new(source: &'a dyn Source, workers: usize, prefetch: usize) -> Loader<'a> {
        Loader {
            source,
            workers,
            prefetch: prefetch.max(1),
            classes: source.class_names().len(),
            images: AtomicUsize::new(0),
            busy_nanos: AtomicU64::new(0),
            gpu_draws: false,
            target_shape: None,
        }
    }

    /// Moves each sample's targets, images of `shape` (a mask, a clean image), with its
    /// input's flip and shift (always here on the host: they are the step's targets).
    pub fn targets_move(mut self, shape: Option<[usize; 3]>) -> Loader<'a> {
        self.target_shape = shape;
        self
    }

    /// Hands each image's flip and shift to `consume` for the GPU to apply in the step,
    /// instead of applying them to the bytes here.
    pub fn draws_on_gpu(mut self, on: bool) -> Loader<'a> {
        self.gpu_draws = on;
        self
    }

    /// Images per second the readers could deliver, by the time they have spent reading
    /// so far (all of them together); None before the first batch.
    pub fn rate(&self) -> Option<f64> {
        let busy = self.busy_nanos.load(Ordering::Relaxed) as f64 * 1e-9;
        let readers = self.workers.max(1) as f64;
        (busy > 0.0).then(|| self.images.load(Ordering::Relaxed) as f64 * readers / busy)
    }

    /// Calls `consume(step, bytes, targets, draws)` for each step of `plan` (the samples of
    /// each batch and their augmentation draws, applied to images of `shape`), in order,
    /// until it returns true or every step is done. The targets are the source's values
    /// if it has them, else its classes.
    pub fn batches(
        &self,
        plan: &[Vec<(usize, Option<Draw>)>],
        shape: Option<[usize; 3]>,
        mut consume: impl FnMut(usize, &[u8], Targets, GpuDraws) -> Result<bool>,
    ) -> Result<()> {
        let values = self.source.target_len() > 0;
        if self.workers == 0 {
            let mut batch = Batch::default();
            for (step, items) in plan.iter().enumerate() {
                self.fill(items, shape, &mut batch)?;
                if consume(step, &batch.x, batch.targets(values), batch.gpu_draws())? {
                    break;
                }
            }
            return Ok(());
        }
        let ahead = self.workers * self.prefetch;
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let consumed = (Mutex::new(0usize), Condvar::new());
        let (tx, rx) = mpsc::channel::<(usize, Result<Batch>)>();
        std::thread::scope(|scope| {
            for _ in 0..self.workers {
                let tx = tx.clone();
                let (next, stop, consumed) = (&next, &stop, &consumed);
                scope.spawn(move || {
                    // A worker that panics stops the others, so the consumer's channel
                    // closes and the panic surfaces instead of a hang.
                    let _stop_all = StopGuard {
                        stop,
                        consumed,
                        only_on_panic: true,
                    };
                    loop {
                        let step = next.fetch_add(1, Ordering::SeqCst);
                        if step >= plan.len() || stop.load(Ordering::SeqCst) {
                            break;
                        }
                        // Wait until the step is within the prefetch window.
                        let Ok(mut done) = consumed.0.lock() else {
                            break;
                        };
                        while step >= *done + ahead && !stop.load(Ordering::SeqCst) {
                            match consumed.1.wait(done) {
                                Ok(d) => done = d,
                                Err(_) => return,
                            }
                        }
                        drop(done);
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let mut batch = Batch::default();
                        let result = self.fill(&plan[step], shape, &mut batch).map(|()| batch);
                        if tx.send((step, result)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            // However the consumer ends (done, an error, a panic in `consume`), the
            // workers are told to stop and woken: the scope can then join them.
            let _stop_all = StopGuard {
                stop: &stop,
                consumed: &consumed,
                only_on_panic: false,
            };
            let mut pending: BTreeMap<usize, Result<Batch>> = BTreeMap::new();
            // The guard above drops after this value is computed, however it ends.
            (|| -> Result<()> {
                for step in 0..plan.len() {
                    let batch = loop {
                        if let Some(b) = pending.remove(&step) {
                            break b;
                        }
                        let (s, b) = rx.recv().context("the data loader's workers stopped")?;
                        pending.insert(s, b);
                    };
                    let batch = batch?;
                    if let Ok(mut done) = consumed.0.lock() {
                        *done = step + 1;
                    }
                    consumed.1.notify_all();
                    if consume(step, &batch.x, batch.targets(values), batch.gpu_draws())? {
                        break;
                    }
                }
                Ok(())
            })()
        })
    }

    /// Reads, scales and augments one batch's samples into `batch`.
    fn fill(
        &self,
        items: &[(usize, Option<Draw>)],
        shape: Option<[usize; 3]>,
        batch: &mut Batch,
    ) -> Result<()> {
        let start = std::time::Instant::now();
        let per: usize = self.source.shape().iter().product();
        let values = self.source.target_len();
        let labels = self.source.labels_per_sample();
        let mut bytes = vec![0u8; per];
        let mut scratch = Vec::new();
        // For targets moved with their inputs.
        let (mut values_copy, mut values_scratch) = (Vec::new(), Vec::new());
        let (mut labels_copy, mut labels_scratch) = (Vec::new(), Vec::new());
        batch.x.resize(items.len() * per, 0);
        batch.y.clear();
        batch.v.resize(items.len() * values, 0.0);
        batch.draws.clear();
        for (j, &(i, draw)) in items.iter().enumerate() {
            let label = self.source.load(i, &mut bytes)?;
            let moved = draw.zip(self.target_shape);
            if values > 0 {
                let target = &mut batch.v[j * values..(j + 1) * values];
                self.source
                    .load_target(i, target)
                    .with_context(|| format!("the targets of sample {i}"))?;
                if let Some((d, shape)) = moved {
                    d.apply_in_place(target, shape, &mut values_copy, &mut values_scratch);
                }
            } else {
                let first = batch.y.len();
                if labels > 1 {
                    batch.y.resize(first + labels, 0);
                    self.source
                        .load_labels(i, &mut batch.y[first..])
                        .with_context(|| format!("the labels of sample {i}"))?;
                    if let Some((d, shape)) = moved {
                        let mask = &mut batch.y[first..];
                        d.apply_in_place(mask, shape, &mut labels_copy, &mut labels_scratch);
                    }
                } else {
                    batch.y.push(label);
                }
                if let Some(&bad) = batch.y[first..]
                    .iter()
                    .find(|&&l| l as usize >= self.classes)
                {
                    bail!(
                        "sample {i}: label {bad} is not one of the data set's {} classes",
                        self.classes
                    );
                }
            }
            let dst = &mut batch.x[j * per..(j + 1) * per];
            match (draw, shape) {
                (Some(d), Some(_)) if self.gpu_draws => {
                    dst.copy_from_slice(&bytes);
                    let (words, fill) = d.words();
                    batch.draws.push(words);
                    batch.fill = fill.unwrap_or(FillMode::Constant);
                }
                // Flips and shifts move pixels and fill with 0 or copies: exact on bytes.
                (Some(d), Some(shape)) => d.apply(&bytes, dst, shape, &mut scratch),
                _ => dst.copy_from_slice(&bytes),
            }
        }
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.images.fetch_add(items.len(), Ordering::Relaxed);
        Ok(())
    }
}
