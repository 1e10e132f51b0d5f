//! A folder of images trains without being held in memory: the peak RSS of a training
//! epoch over 1,200 generated 64×64 RGB PNGs grows by a fraction of what their f32 copy
//! (59 MB) or even their bytes (15 MB) would take. Own test binary: RSS is per process.

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use wgcnn::data::{FolderOptions, ImageFolder, Source};
use wgcnn::prelude::*;

fn peak_rss_kib() -> u64 {
    wgcnn::testing::proc_status_kib("VmHWM")
}

#[test]
fn training_from_a_folder_holds_no_copy_of_it() -> anyhow::Result<()> {
    if peak_rss_kib() == 0 {
        eprintln!("no /proc/self/status here: nothing to measure");
        return Ok(());
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("streaming-memory");
    let _ = std::fs::remove_dir_all(&dir);
    let (n, side) = (1_200usize, 64u32);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for i in 0..n {
        let class = dir.join(format!("class{}", i % 3));
        std::fs::create_dir_all(&class)?;
        let img = RgbImage::from_fn(side, side, |_, _| Rgb(rng.random::<[u8; 3]>()));
        img.save(class.join(format!("{i:05}.png")))?;
    }
    let folder = ImageFolder::open(&dir, &FolderOptions::new(side, side))?;
    assert_eq!(folder.len(), n);

    let mut m = Sequential::new();
    m.add(Input::new(&[64, 64, 3]))?;
    m.add(Conv2D::new(8, 3).strides(2, 2).activation(Relu))?;
    m.add(GlobalAveragePooling2D::new())?;
    m.add(Dense::new(3).activation(Softmax))?;
    let mut m = m.into_model();
    m.compile(
        Optimizer::adam(),
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
    )?;
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 32,
        verbose: false,
        workers: 2,
        ..Default::default()
    };
    // A first epoch on a few images: shaders, buffers and the loader's threads exist after it.
    let few = ImageFolder::open(&dir, &FolderOptions::new(side, side))?;
    let head = Head(&few, 320); // more batches than the loader holds at once
    m.fit_source(&head, &cfg)?;
    let before = peak_rss_kib();
    m.fit_source(&folder, &cfg)?;
    let grown_mib = (peak_rss_kib() - before) as f64 / 1024.0;
    let f32_mib = (n * 64 * 64 * 3 * 4) as f64 / (1 << 20) as f64;
    eprintln!(
        "peak RSS grew {grown_mib:.1} MiB over an epoch of {n} images ({f32_mib:.0} MiB as f32)"
    );
    assert!(
        grown_mib < f32_mib / 8.0,
        "the peak RSS grew {grown_mib:.1} MiB: more than an eighth of the f32 copy ({f32_mib:.0} MiB)"
    );
    Ok(())
}

/// The first `n` samples of a source.
#[derive(Debug)]
struct Head<'a>(&'a ImageFolder, usize);

impl Source for Head<'_> {
    fn len(&self) -> usize {
        self.1.min(self.0.len())
    }
    fn shape(&self) -> [usize; 3] {
        self.0.shape()
    }
    fn load(&self, index: usize, pixels: &mut [u8]) -> anyhow::Result<u32> {
        self.0.load(index, pixels)
    }
    fn class_names(&self) -> Vec<String> {
        self.0.class_names()
    }
}
