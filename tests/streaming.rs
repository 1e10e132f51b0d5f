//! Data sets read sample by sample (`data::Source`): a loader's batches train exactly as the
//! same images in memory (order, augmentation, resume), whatever the number of workers;
//! `image_dataset_from_directory`'s folder reading, split and errors.

use image::{ImageFormat, Rgb, RgbImage};
use std::path::{Path, PathBuf};
use wgcnn::data::augment::RandomTranslation;
use wgcnn::data::{Dataset, FolderOptions, ImageBytes, ImageFolder, Source, Subset};
use wgcnn::prelude::*;
use wgcnn::testing::random_vec;

mod common;

type R = anyhow::Result<()>;

fn tmp(name: &str) -> PathBuf {
    common::tmp("streaming", name)
}

/// 8×8×3 byte images labelled by their brightest channel.
fn bytes(n: usize, seed: u64) -> ImageBytes {
    let v = random_vec(n * 192, seed);
    let pixels: Vec<u8> = v
        .iter()
        .map(|x| (x.abs() * 255.0).min(255.0) as u8)
        .collect();
    let labels = (0..n)
        .map(|i| {
            let img = &pixels[i * 192..(i + 1) * 192];
            let sum = |c: usize| {
                img.iter()
                    .skip(c)
                    .step_by(3)
                    .map(|&b| u32::from(b))
                    .sum::<u32>()
            };
            (0..3).max_by_key(|&c| sum(c)).unwrap_or(0) as u32
        })
        .collect();
    let names = ["red", "green", "blue"].map(String::from).to_vec();
    ImageBytes::new(pixels, labels, [8, 8, 3], names).unwrap()
}

/// The same images as an in-memory `Dataset` (f32 in [0, 1]).
fn in_memory(src: &ImageBytes) -> Dataset {
    let mut px = vec![0u8; 192];
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..src.len() {
        labels.push(src.load(i, &mut px).unwrap());
        images.extend(px.iter().map(|&b| f32::from(b) / 255.0));
    }
    Dataset {
        images,
        labels,
        height: 8,
        width: 8,
        channels: 3,
        class_names: src.class_names(),
    }
}

fn model(device: Device) -> anyhow::Result<Model> {
    let mut m = Sequential::new();
    m.add(Input::new(&[8, 8, 3]))?;
    m.add(Conv2D::new(4, 3).padding(Same).activation(Relu))?;
    m.add(MaxPooling2D::new(2))?;
    m.add(Flatten::new())?;
    m.add(Dropout::new(0.2))?;
    m.add(Dense::new(3).activation(Softmax))?;
    compiled(
        m,
        device,
        Loss::SparseCategoricalCrossentropy,
        Metric::Accuracy,
    )
}

/// Two epochs of `cfg` from `train` with `workers`, validated on `val`.
fn fit_validated(
    m: &mut Model,
    train: &ImageBytes,
    val: &ImageBytes,
    workers: usize,
) -> anyhow::Result<History> {
    let cfg = FitConfig {
        validation_source: Some(val),
        ..cfg(2, workers)
    };
    m.fit_source(train, &cfg)
}

/// `m` on `device`, seed 5, Adam at 0.01.
fn compiled(m: Sequential, device: Device, loss: Loss, metric: Metric) -> anyhow::Result<Model> {
    let mut m = m.into_model();
    m.set_device(device).set_seed(5);
    m.compile(Optimizer::adam().learning_rate(0.01), loss, &[metric])?;
    Ok(m)
}

fn gpu() -> Device {
    Device::gpu().expect("a GPU adapter (lavapipe in CI) is required")
}

fn cfg(epochs: usize, workers: usize) -> FitConfig<'static> {
    FitConfig {
        epochs,
        batch_size: 16,
        verbose: false,
        horizontal_flip: true,
        translation: Some(RandomTranslation::new(0.25, 0.25)),
        workers,
        prefetch_factor: 2,
        ..Default::default()
    }
}

#[test]
fn a_source_trains_like_the_same_images_in_memory_whatever_the_workers() -> R {
    let (train, val) = (bytes(83, 1), bytes(21, 2)); // 83 = 5 × 16 + 3: a partial last batch
    let (mem, mem_val) = (in_memory(&train), in_memory(&val));
    let mut reference = model(gpu())?;
    let h_mem = reference.fit(
        &mem.images,
        &mem.labels,
        &FitConfig {
            validation_data: Some((&mem_val.images, &mem_val.labels)),
            ..cfg(2, 0)
        },
    )?;
    let want = reference.get_weights()?;
    for workers in [0, 1, 3] {
        let mut m = model(gpu())?;
        let h = fit_validated(&mut m, &train, &val, workers)?;
        assert_eq!(
            m.get_weights()?,
            want,
            "{workers} workers: the same weights bit for bit"
        );
        assert_eq!(
            (h.loss.clone(), h.val_loss.clone(), h.val_accuracy.clone()),
            (
                h_mem.loss.clone(),
                h_mem.val_loss.clone(),
                h_mem.val_accuracy.clone()
            ),
            "{workers} workers"
        );
        assert_eq!(
            m.evaluate_source(&val, 7, workers)?,
            reference.evaluate_batched(&mem_val.images, &mem_val.labels, 7)?
        );
        assert_eq!(
            m.predict_source(&val, 5, workers)?,
            reference.predict(&mem_val.images, 5)?
        );
    }
    // The CPU reference path reads sources too.
    let mut c = model(Device::Cpu)?;
    c.fit_source(&train, &cfg(1, 2))?;
    let mut cm = model(Device::Cpu)?;
    cm.fit(&mem.images, &mem.labels, &cfg(1, 0))?;
    assert_eq!(c.get_weights()?, cm.get_weights()?);
    Ok(())
}

#[test]
fn a_source_resumes_bit_for_bit() -> R {
    let train = bytes(50, 3);
    let dir = tmp("resume");
    let mut straight = model(gpu())?;
    straight.fit_source(&train, &cfg(3, 2))?;
    let mut first = model(gpu())?;
    first.fit_source(&train, &cfg(1, 2))?;
    first.save(dir.join("m.safetensors"))?;
    let mut resumed = Model::load(dir.join("m.safetensors"))?;
    resumed.fit_source(
        &train,
        &FitConfig {
            initial_epoch: 1,
            ..cfg(3, 1)
        },
    )?;
    assert_eq!(resumed.get_weights()?, straight.get_weights()?);
    Ok(())
}

#[test]
fn sources_are_checked_against_the_model() -> R {
    let mut m = model(Device::Cpu)?;
    let wrong = ImageBytes::new(
        vec![0; 2 * 48],
        vec![0, 1],
        [4, 4, 3],
        vec!["a".into(), "b".into()],
    )?;
    let err = format!("{:#}", m.fit_source(&wrong, &cfg(1, 0)).unwrap_err());
    assert!(
        err.contains("[4, 4, 3]") && err.contains("[8, 8, 3]"),
        "{err}"
    );
    let split = FitConfig {
        validation_split: 0.2,
        ..cfg(1, 0)
    };
    let err = format!("{:#}", m.fit_source(&bytes(10, 1), &split).unwrap_err());
    assert!(err.contains("validation_source"), "{err}");
    // A source whose labels pass its own class count fails at the batch, naming it.
    let names = vec!["only".to_string()];
    assert!(ImageBytes::new(vec![0; 192], vec![1], [8, 8, 3], names).is_err());
    // Bytes from a Dataset: exact for k / 255 values, an error otherwise.
    let d = in_memory(&bytes(4, 9));
    assert_eq!(d.to_bytes()?, bytes(4, 9));
    let mut odd = d.clone();
    odd.images[5] = 0.3337;
    assert!(odd.to_bytes().is_err());
    Ok(())
}

/// A regression head (two values per image: its mean red and mean blue) on the same
/// convolutional trunk, mean squared error.
fn regression(device: Device) -> anyhow::Result<Model> {
    let mut m = Sequential::new();
    m.add(Input::new(&[8, 8, 3]))?;
    m.add(Conv2D::new(4, 3).padding(Same).activation(Relu))?;
    m.add(GlobalAveragePooling2D::new())?;
    m.add(Dense::new(2))?;
    compiled(m, device, Loss::MeanSquaredError, Metric::MeanAbsoluteError)
}

/// The images of `bytes(n, seed)` with value targets: each image's mean red and blue.
fn valued(n: usize, seed: u64) -> anyhow::Result<(ImageBytes, Vec<f32>)> {
    let src = bytes(n, seed);
    let mem = in_memory(&src);
    let mean = |img: &[f32], c: usize| img.iter().skip(c).step_by(3).sum::<f32>() / 64.0;
    let values: Vec<f32> = mem
        .images
        .chunks(192)
        .flat_map(|img| [mean(img, 0), mean(img, 2)])
        .collect();
    let mut pixels = vec![0u8; n * 192];
    for (i, chunk) in pixels.chunks_mut(192).enumerate() {
        src.load(i, chunk)?;
    }
    Ok((
        ImageBytes::with_values(pixels, values.clone(), [8, 8, 3])?,
        values,
    ))
}

/// Value targets (a regression's numbers) from a source: the same weights, history,
/// evaluation and predictions as the arrays in memory, with flips and shifts (the targets
/// do not move with a vector output), whatever the workers, on the GPU and the CPU path;
/// a source of the wrong kind or size is an error naming both.
#[test]
fn a_source_of_value_targets_trains_like_arrays() -> R {
    let ((train, y), (val, vy)) = (valued(83, 3)?, valued(21, 4)?);
    assert_eq!(train.target_len(), 2);
    let (mem, mem_val) = (in_memory(&train), in_memory(&val));
    for device in [gpu(), Device::Cpu] {
        let mut reference = regression(device.clone())?;
        let h_mem = reference.fit(
            &mem.images,
            &y[..],
            &FitConfig {
                validation_values: Some((&mem_val.images, &vy)),
                ..cfg(2, 0)
            },
        )?;
        for workers in [0, 2] {
            let mut m = regression(device.clone())?;
            let h = fit_validated(&mut m, &train, &val, workers)?;
            assert_eq!(
                m.get_weights()?,
                reference.get_weights()?,
                "{workers} workers"
            );
            assert_eq!((&h.loss, &h.val_loss), (&h_mem.loss, &h_mem.val_loss));
            assert_eq!(
                m.evaluate_source(&val, 7, workers)?,
                reference.evaluate_batched(&mem_val.images, &vy[..], 7)?
            );
            assert_eq!(
                m.predict_source(&val, 5, workers)?,
                reference.predict(&mem_val.images, 5)?
            );
        }
        // It learned something: the loss fell.
        assert!(h_mem.loss[1] < h_mem.loss[0], "{:?}", h_mem.loss);
    }
    // Classes for a value model, values for a classifier, the wrong number of values.
    let mut r = regression(Device::Cpu)?;
    let err = format!("{:#}", r.fit_source(&bytes(10, 1), &cfg(1, 0)).unwrap_err());
    assert!(
        err.contains("2 target values") && err.contains("class labels"),
        "{err}"
    );
    let mut c = model(Device::Cpu)?;
    let err = format!("{:#}", c.fit_source(&train, &cfg(1, 0)).unwrap_err());
    assert!(err.contains("2 target values"), "{err}");
    let (three, _) = (
        ImageBytes::with_values(vec![7; 2 * 192], vec![0.5; 6], [8, 8, 3])?,
        (),
    );
    let err = format!("{:#}", r.evaluate_source(&three, 4, 0).unwrap_err());
    assert!(
        err.contains("2 target values") && err.contains("gives 3"),
        "{err}"
    );
    assert!(ImageBytes::with_values(vec![0; 2 * 192], vec![0.5; 3], [8, 8, 3]).is_err());
    Ok(())
}

/// Per-pixel class labels (a segmentation's masks) from a source: each pixel's brightest
/// channel, learned by a fully convolutional classifier; the same weights, history and
/// evaluation as the masks in memory, whatever the workers, on the GPU and the CPU path.
#[test]
fn a_source_of_masks_trains_like_arrays() -> R {
    let masked = |n: usize, seed: u64| -> anyhow::Result<(ImageBytes, Vec<u32>)> {
        let src = bytes(n, seed);
        let mut pixels = vec![0u8; n * 192];
        for (i, chunk) in pixels.chunks_mut(192).enumerate() {
            src.load(i, chunk)?;
        }
        let masks: Vec<u32> = pixels
            .chunks(3)
            .map(|px| (0..3).max_by_key(|&c| px[c]).unwrap_or(0) as u32)
            .collect();
        let names = src.class_names();
        Ok((
            ImageBytes::with_masks(pixels, masks.clone(), [8, 8, 3], names)?,
            masks,
        ))
    };
    let ((train, y), (val, vy)) = (masked(37, 5)?, masked(11, 6)?);
    assert_eq!((train.len(), train.labels_per_sample()), (37, 64));
    let (mem, mem_val) = (in_memory(&train), in_memory(&val));
    let segmenter = |device: Device| -> anyhow::Result<Model> {
        let mut m = Sequential::new();
        m.add(Input::new(&[8, 8, 3]))?;
        m.add(Conv2D::new(4, 3).padding(Same).activation(Relu))?;
        m.add(Conv2D::new(3, 1).activation(Softmax))?;
        compiled(
            m,
            device,
            Loss::SparseCategoricalCrossentropy,
            Metric::Accuracy,
        )
    };
    // Image outputs take no flips or shifts (their targets would not move with them).
    let plain = |workers| FitConfig {
        horizontal_flip: false,
        translation: None,
        ..cfg(2, workers)
    };
    for device in [gpu(), Device::Cpu] {
        let mut reference = segmenter(device.clone())?;
        let h_mem = reference.fit(&mem.images, &y[..], &plain(0))?;
        for workers in [0, 2] {
            let mut m = segmenter(device.clone())?;
            let h = m.fit_source(&train, &plain(workers))?;
            assert_eq!(
                m.get_weights()?,
                reference.get_weights()?,
                "{workers} workers"
            );
            assert_eq!((&h.loss, &h.accuracy), (&h_mem.loss, &h_mem.accuracy));
            assert_eq!(
                m.evaluate_source(&val, 4, workers)?,
                reference.evaluate_batched(&mem_val.images, &vy[..], 4)?
            );
        }
        assert!(
            h_mem.accuracy[1] > h_mem.accuracy[0],
            "{:?}",
            h_mem.accuracy
        );
    }
    // One label per image for a per-pixel classifier is an error naming both counts.
    let mut m = segmenter(Device::Cpu)?;
    let err = format!("{:#}", m.fit_source(&bytes(4, 1), &plain(0)).unwrap_err());
    assert!(
        err.contains("64 class label(s)") && err.contains("gives 1"),
        "{err}"
    );
    Ok(())
}

/// Writes `dir/<class>/<i>.<ext>`: `per_class` images of `w`×`h` per class, each a flat
/// colour that encodes (class, i).
fn image_folder(dir: &Path, classes: &[&str], per_class: usize, (w, h): (u32, u32)) {
    for (c, name) in classes.iter().enumerate() {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..per_class {
            let img = RgbImage::from_pixel(w, h, Rgb([c as u8 * 60, i as u8, 200]));
            let (ext, fmt) = if i % 2 == 0 {
                ("png", ImageFormat::Png)
            } else {
                ("jpg", ImageFormat::Jpeg)
            };
            img.save_with_format(sub.join(format!("{i:03}.{ext}")), fmt)
                .unwrap();
        }
    }
}

#[test]
fn image_folders_read_lazily_split_like_keras_and_name_bad_files() -> R {
    let dir = tmp("folder");
    image_folder(&dir, &["cat", "dog", "emu"], 7, (13, 9));
    std::fs::write(dir.join("cat/.hidden.png"), b"not an image").unwrap();
    let all = ImageFolder::open(&dir, &FolderOptions::new(6, 5))?;
    assert_eq!(all.len(), 21);
    assert_eq!(all.class_names(), ["cat", "dog", "emu"]);
    assert_eq!(all.shape(), [6, 5, 3]);
    let mut px = vec![0u8; 6 * 5 * 3];
    // dog/002.png: a flat (60, 2, 200), resized to 6 × 5 and still flat.
    let i = all
        .files()
        .iter()
        .position(|(p, _)| p.ends_with("dog/002.png"))
        .unwrap();
    assert_eq!(all.load(i, &mut px)?, 1);
    assert!(px.chunks(3).all(|p| p == [60, 2, 200]), "{px:?}");
    let grey = ImageFolder::open(&dir, &FolderOptions::new(6, 5).color_mode("grayscale")?)?;
    assert_eq!(grey.shape(), [6, 5, 1]);
    assert!(FolderOptions::new(6, 5).color_mode("cmyk").is_err());

    // Keras: shuffle with the seed, the last int(0.25 · 21) = 5 files validate.
    let opts = FolderOptions::new(6, 5).validation_split(0.25, 1337);
    let train = ImageFolder::open(&dir, &opts.clone().subset(Subset::Training))?;
    let val = ImageFolder::open(&dir, &opts.clone().subset(Subset::Validation))?;
    assert_eq!((train.len(), val.len()), (16, 5));
    let mut both: Vec<&PathBuf> = train
        .files()
        .iter()
        .chain(val.files())
        .map(|(p, _)| p)
        .collect();
    both.sort();
    both.dedup();
    assert_eq!(both.len(), 21, "the two sides partition the files");
    let again = ImageFolder::open(&dir, &opts.subset(Subset::Validation))?;
    assert_eq!(again.files(), val.files(), "the same seed, the same split");
    let other = FolderOptions::new(6, 5)
        .validation_split(0.25, 7)
        .subset(Subset::Validation);
    assert_ne!(ImageFolder::open(&dir, &other)?.files(), val.files());

    // Training reads them; a broken file is an error naming it, at the batch that holds it.
    let mut m = Sequential::new();
    m.add(Input::new(&[6, 5, 3]))?;
    m.add(Flatten::new())?;
    m.add(Dense::new(3).activation(Softmax))?;
    let mut m = m.into_model();
    m.set_device(Device::Cpu);
    m.compile(
        Optimizer::adam(),
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
    )?;
    m.fit_source(&all, &cfg(1, 2))?;
    std::fs::write(dir.join("emu/003.jpg"), b"truncated").unwrap();
    let err = format!("{:#}", m.fit_source(&all, &cfg(1, 2)).unwrap_err());
    assert!(err.contains("emu/003.jpg"), "{err}");
    let missing = ImageFolder::open(dir.join("nope"), &FolderOptions::new(6, 5));
    assert!(format!("{:#}", missing.unwrap_err()).contains("not found"));
    Ok(())
}

#[test]
fn a_source_step_uploads_bytes_in_one_submit_and_allocates_nothing() -> R {
    // A device of its own: the shared one's counters move with every parallel test.
    let g = std::sync::Arc::new(wgcnn::Gpu::new()?);
    let mut m = model(Device::Gpu(g.clone()))?;
    let train = bytes(160, 4); // 10 steps of 16
    let cfg = FitConfig {
        horizontal_flip: false,
        translation: None,
        ..cfg(1, 2)
    };
    m.fit_source(&train, &cfg)?; // the first epoch builds the graph and its byte input
    let (b0, s0, r0) = g.counters.snapshot();
    m.fit_source(&train, &cfg)?;
    let (b1, s1, r1) = g.counters.snapshot();
    assert_eq!(b1 - b0, 0, "buffers created during an epoch");
    assert_eq!(s1 - s0, 10 + (r1 - r0), "submits: 10 steps + read-backs");
    Ok(())
}

/// A source whose sample `bad` panics when read (a user's loader with an `unwrap`).
#[derive(Debug)]
struct Panicky(ImageBytes, usize);

impl Source for Panicky {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn shape(&self) -> [usize; 3] {
        self.0.shape()
    }
    fn load(&self, index: usize, pixels: &mut [u8]) -> anyhow::Result<u32> {
        assert_ne!(index, self.1, "sample {index} panics on purpose");
        self.0.load(index, pixels)
    }
    fn class_names(&self) -> Vec<String> {
        self.0.class_names()
    }
}

/// Runs `f` on a thread of its own; true when it panicked, false when it returned, and a
/// failure when it is still running after a minute (a hang).
fn panics_within_a_minute(f: impl FnOnce() + Send + 'static) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r.is_err());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("hung instead of ending")
}

#[test]
fn a_panic_in_a_worker_or_in_training_ends_the_fit_instead_of_hanging() {
    // 20 steps of 16 with 2 workers × 2 batches ahead: most of the epoch is outside the
    // prefetch window when the panic comes.
    let train = bytes(320, 6);
    let (t, u) = (train.clone(), train.clone());
    assert!(panics_within_a_minute(move || {
        let mut m = model(Device::Cpu).unwrap();
        let _ = m.fit_source(&Panicky(t, 40), &cfg(1, 2));
    }));
    assert!(panics_within_a_minute(move || {
        let mut m = model(Device::Cpu).unwrap();
        let boom = wgcnn::callbacks::Callback::on_train_batch_end(3, |step, _, _| {
            panic!("a callback panics at step {step}")
        });
        let c = FitConfig {
            callbacks: vec![boom],
            ..cfg(1, 2)
        };
        let _ = m.fit_source(&u, &c);
    }));
}
