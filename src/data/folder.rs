//! A folder of images with one sub-folder per class.

use super::{Dataset, to_unit};
use anyhow::{Context, Result, bail, ensure};
use image::{DynamicImage, GenericImageView, ImageReader, imageops::FilterType};
use std::path::{Path, PathBuf};

/// Loads `dir/<class>/<image>`: each sub-folder is a class, classes are the
/// sub-folder names in sorted order, images within a class are read in sorted
/// order. Any format the `image` crate decodes is accepted (detected from the
/// content); names starting with `.` are ignored.
///
/// `size` is `(width, height)`: when given, every image is resized to it; when
/// `None`, all images must already have the same size (an error names the first
/// one that differs). The result has 1 channel if every image is greyscale and 3
/// (RGB) otherwise; alpha is dropped.
pub fn load_image_folder(dir: impl AsRef<Path>, size: Option<(u32, u32)>) -> Result<Dataset> {
    let dir = dir.as_ref();
    if let Some((w, h)) = size {
        ensure!(w > 0 && h > 0, "image size {w}x{h} has a zero dimension");
    }
    let classes = sorted_entries(dir, true)?;
    ensure!(
        !classes.is_empty(),
        "{}: no class sub-folders (expected one folder of images per class)",
        dir.display()
    );

    let mut images: Vec<(u32, DynamicImage)> = Vec::new();
    let mut first: Option<(PathBuf, (u32, u32))> = None;
    for (label, class_dir) in (0u32..).zip(&classes) {
        for path in sorted_entries(class_dir, false)? {
            let mut img = decode(&path)?;
            if let Some((w, h)) = size
                && img.dimensions() != (w, h)
            {
                img = img.resize_exact(w, h, FilterType::Triangle);
            }
            match &first {
                None => first = Some((path, img.dimensions())),
                Some((first_path, dims)) if *dims != img.dimensions() => bail!(
                    "{}: image is {}x{} but {} is {}x{}; pass a size to resize all images",
                    path.display(),
                    img.width(),
                    img.height(),
                    first_path.display(),
                    dims.0,
                    dims.1
                ),
                Some(_) => {}
            }
            images.push((label, img));
        }
    }
    let Some((_, (width, height))) = first else {
        bail!("{}: no images in any class folder", dir.display());
    };

    let grey = images.iter().all(|(_, img)| !img.color().has_color());
    let mut data = Vec::new();
    let mut labels = Vec::with_capacity(images.len());
    for (label, img) in images {
        let pixels = if grey {
            img.into_luma8().into_raw()
        } else {
            img.into_rgb8().into_raw()
        };
        data.extend(to_unit(&pixels));
        labels.push(label);
    }
    let class_names = names_of(&classes);
    Ok(Dataset {
        images: data,
        labels,
        height: height as usize,
        width: width as usize,
        channels: if grey { 1 } else { 3 },
        class_names,
    })
}

pub(super) fn decode(path: &Path) -> Result<DynamicImage> {
    ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .with_context(|| format!("opening {}", path.display()))?
        .decode()
        .with_context(|| format!("decoding image {}", path.display()))
}

/// The folders' names (the classes' names).
pub(super) fn names_of(classes: &[PathBuf]) -> Vec<String> {
    classes
        .iter()
        .map(|c| {
            c.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Non-hidden sub-folders (`dirs == true`) or files of `dir`, sorted by name.
pub(super) fn sorted_entries(dir: &Path, dirs: bool) -> Result<Vec<PathBuf>> {
    let read =
        |e: std::io::Error| anyhow::Error::new(e).context(format!("reading {}", dir.display()));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("image folder not found: {}", dir.display())
        }
        _ => read(e),
    })? {
        let entry = entry.map_err(read)?;
        let path = entry.path();
        // Follows symlinks, so linked class folders and images work.
        if entry.file_name().to_string_lossy().starts_with('.') || path.is_dir() != dirs {
            continue;
        }
        out.push(path);
    }
    out.sort();
    Ok(out)
}
