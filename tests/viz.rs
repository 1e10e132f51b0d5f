//! Each picture is written to a temporary folder, decoded again, and checked for its exact
//! size (from the public layout functions) and a few pixels.

use std::path::PathBuf;

use image::RgbImage;
use wgcnn::metrics::ConfusionMatrix;
use wgcnn::viz::{self, BORDER, BORDER_COLOR, Curves, GridLayout};

/// A fresh path under a folder that does not exist yet, so parent creation is tested too.
fn out(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("viz-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("nested").join(format!("{name}.png"))
}

fn open(path: &PathBuf) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// Pixel at the centre of source pixel (`x`, `y`) of tile `i`.
fn tile_px(img: &RgbImage, layout: &GridLayout, i: usize, scale: u32, x: u32, y: u32) -> [u8; 3] {
    let (ox, oy) = layout.tile_origin(i);
    img.get_pixel(ox + x * scale + scale / 2, oy + y * scale + scale / 2)
        .0
}

#[test]
fn grid_is_near_square() {
    let dims = |n| {
        let g = GridLayout::square(n, 1, 1);
        (g.cols, g.rows)
    };
    assert_eq!(dims(64), (8, 8));
    assert_eq!(dims(10), (4, 3));
    assert_eq!(dims(32), (6, 6));
    assert_eq!(dims(1), (1, 1));
    assert_eq!(dims(0), (0, 0));
    let g = GridLayout::square(10, 20, 30);
    assert_eq!(g.size(), (4 * 20 + 5 * BORDER, 3 * 30 + 4 * BORDER));
    assert_eq!(
        g.tile_origin(5),
        (BORDER + 20 + BORDER, BORDER + 30 + BORDER)
    );
}

#[test]
fn rgb_filters_one_tile_each() {
    let (kh, kw, cin, cout) = (3, 3, 3, 5);
    let idx = |y: usize, x: usize, ci: usize, co: usize| ((y * kw + x) * cin + ci) * cout + co;
    let mut w = vec![0.0f32; kh * kw * cin * cout];
    w[idx(1, 2, 0, 2)] = 0.7; // filter 2: one hot red weight at row 1, column 2
    for (i, y) in (0..3).enumerate() {
        w[idx(y, 0, 1, 4)] = -1.0 + i as f32; // filter 4: green ramp -1, 0, 1 down column 0
    }
    let path = out("rgb_filters");
    viz::save_filters(&w, kh, kw, cin, cout, &path).unwrap();
    let img = open(&path);

    let layout = viz::filter_layout(kh, kw, cin, cout);
    let s = viz::upscale(3, viz::FILTER_TILE_PX);
    assert_eq!((layout.cols, layout.rows, layout.tile_w), (3, 2, 3 * s));
    assert!(layout.tile_w >= viz::FILTER_TILE_PX);
    assert_eq!(img.dimensions(), layout.size());
    assert_eq!(img.get_pixel(0, 0).0, BORDER_COLOR);

    assert_eq!(
        tile_px(&img, &layout, 2, s, 2, 1),
        [255, 0, 0],
        "hot weight at its place"
    );
    assert_eq!(tile_px(&img, &layout, 2, s, 1, 1), [0, 0, 0]);
    assert_eq!(
        tile_px(&img, &layout, 0, s, 1, 1),
        [128, 128, 128],
        "constant filter is mid-grey"
    );
    // Filter 4 spans -1..1, so 0 weights are mid-grey and the ramp runs 0 → 255.
    assert_eq!(tile_px(&img, &layout, 4, s, 0, 0), [128, 0, 128]);
    assert_eq!(
        tile_px(&img, &layout, 4, s, 0, 2),
        [128, 255, 128],
        "brightest weight is 255"
    );
}

#[test]
fn grey_filters_for_one_and_many_input_channels() {
    // cin = 1: a near-square grid of cout tiles.
    let mut w = vec![0.0f32; 3 * 3 * 4];
    w[4 * 4 + 3] = 2.0; // centre (1, 1) of filter 3
    let path = out("grey_filters");
    viz::save_filters(&w, 3, 3, 1, 4, &path).unwrap();
    let img = open(&path);
    let layout = viz::filter_layout(3, 3, 1, 4);
    let s = layout.tile_w / 3;
    assert_eq!((layout.cols, layout.rows), (2, 2));
    assert_eq!(img.dimensions(), layout.size());
    assert_eq!(tile_px(&img, &layout, 3, s, 1, 1), [255; 3]);
    assert_eq!(tile_px(&img, &layout, 3, s, 0, 0), [0; 3]);

    // cin = 2: one row per filter, one tile per input channel.
    let (kh, kw, cin, cout) = (2, 3, 2, 3);
    let mut w = vec![0.5f32; kh * kw * cin * cout];
    w[((kw + 2) * cin + 1) * cout + 1] = 9.0; // filter 1, channel 1, at row 1, column 2
    let path = out("multi_channel_filters");
    viz::save_filters(&w, kh, kw, cin, cout, &path).unwrap();
    let img = open(&path);
    let layout = viz::filter_layout(kh, kw, cin, cout);
    assert_eq!((layout.cols, layout.rows), (2, 3));
    assert_eq!(img.dimensions(), layout.size());
    let s = layout.tile_w / kw as u32;
    assert_eq!(
        tile_px(&img, &layout, 3, s, 2, 1),
        [255; 3],
        "tile = filter * cin + channel"
    );
    assert_eq!(tile_px(&img, &layout, 3, s, 0, 0), [0; 3]);
    assert_eq!(
        tile_px(&img, &layout, 2, s, 2, 1),
        [128; 3],
        "other channel of filter 1 is flat"
    );
}

#[test]
fn feature_maps_each_channel_normalised() {
    let (h, w, c) = (4, 6, 3);
    let mut act = vec![0.0f32; h * w * c];
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) * c;
            act[i] = x as f32 * 10.0; // channel 0: ramp along x
            act[i + 1] = 5.0; // channel 1: constant
            act[i + 2] = -3.0; // channel 2: flat except one hot value and a NaN
        }
    }
    act[(2 * w + 4) * c + 2] = 1.0;
    act[c + 2] = f32::NAN;
    let path = out("feature_maps");
    viz::save_feature_maps(&act, h, w, c, &path).unwrap();
    let img = open(&path);

    let layout = viz::feature_map_layout(h, w, c);
    let s = viz::upscale(6, viz::FEATURE_TILE_PX);
    assert_eq!(layout, GridLayout::square(3, 6 * s, 4 * s));
    assert!(layout.tile_w >= viz::FEATURE_TILE_PX);
    assert_eq!(img.dimensions(), layout.size());
    assert_eq!(tile_px(&img, &layout, 0, s, 0, 3), [0; 3]);
    assert_eq!(tile_px(&img, &layout, 0, s, 5, 0), [255; 3]);
    assert_eq!(
        tile_px(&img, &layout, 1, s, 2, 2),
        [128; 3],
        "constant channel is mid-grey"
    );
    assert_eq!(
        tile_px(&img, &layout, 2, s, 4, 2),
        [255; 3],
        "hot value at its place"
    );
    assert_eq!(tile_px(&img, &layout, 2, s, 0, 0), [0; 3]);
    // The unused fourth grid cell stays border-coloured.
    assert_eq!(tile_px(&img, &layout, 3, s, 0, 0), BORDER_COLOR);
}

#[test]
fn image_upscaled_and_clamped() {
    let rgb = [
        1.0,
        0.0,
        0.0,
        0.5,
        0.5,
        0.5,
        2.0,
        -1.0,
        f32::NAN, //
        0.0,
        0.0,
        1.0,
        0.0,
        1.0,
        0.0,
        1.0,
        1.0,
        1.0,
    ];
    let path = out("image_rgb");
    viz::save_image(&rgb, 2, 3, 3, 4, &path).unwrap();
    let img = open(&path);
    assert_eq!(img.dimensions(), (12, 8));
    assert_eq!(img.get_pixel(0, 0).0, [255, 0, 0]);
    assert_eq!(img.get_pixel(7, 3).0, [128, 128, 128]);
    assert_eq!(img.get_pixel(11, 0).0, [255, 0, 0], "clamped, NaN black");
    assert_eq!(img.get_pixel(5, 5).0, [0, 255, 0]);

    let path = out("image_grey");
    viz::save_image(&[0.0, 1.0], 1, 2, 1, 1, &path).unwrap();
    let img = open(&path);
    assert_eq!(img.dimensions(), (2, 1));
    assert_eq!(img.get_pixel(1, 0).0, [255; 3]);

    assert!(viz::save_image(&[0.0; 4], 1, 2, 2, 1, &out("image_bad_c")).is_err());
    assert!(viz::save_image(&[0.0; 2], 1, 2, 1, 0, &out("image_bad_scale")).is_err());
}

#[test]
fn wrong_lengths_are_errors_naming_both() {
    let path = out("bad");
    let msg = |r: anyhow::Result<()>| format!("{:#}", r.unwrap_err());
    let m = msg(viz::save_filters(&[0.0; 26], 3, 3, 3, 1, &path));
    assert!(m.contains("26") && m.contains("27"), "{m}");
    let m = msg(viz::save_feature_maps(&[0.0; 10], 2, 2, 3, &path));
    assert!(m.contains("10") && m.contains("12"), "{m}");
    let m = msg(viz::save_image(&[0.0; 5], 2, 2, 1, 2, &path));
    assert!(m.contains('5') && m.contains('4'), "{m}");
    // Nothing to draw, or absurd sizes: errors, not panics or huge allocations.
    assert!(viz::save_feature_maps(&[], 0, 4, 4, &path).is_err());
    assert!(viz::save_filters(&[], 3, 3, 3, 0, &path).is_err());
    assert!(viz::save_image(&[0.0; 1], 1, 1, 1, u32::MAX, &path).is_err());
    assert!(viz::save_feature_maps(&[0.0; 4], 1, 1, usize::MAX, &path).is_err());
    assert!(!path.exists());
}

fn cifar_names() -> Vec<String> {
    let names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn confusion_matrix_heatmap() {
    let mut cm = ConfusionMatrix::new(10);
    for t in 0..10u32 {
        for k in 0..(10 * (t + 1)) {
            // Row 0 is all correct; the others are 80% correct.
            cm.add(
                t,
                if t == 0 || k % 5 != 0 {
                    t
                } else {
                    (t + 1) % 10
                },
            )
            .unwrap();
        }
    }
    let path = out("confusion");
    viz::save_confusion_matrix(&cm, &cifar_names(), "CIFAR-10", &path).unwrap();
    let img = open(&path);
    let layout = viz::confusion_matrix_layout(10);
    assert_eq!(img.dimensions(), (layout.width, layout.height));
    assert_eq!(layout.cell, 64);

    // A corner of each cell (away from the count's text) shows its share of the row.
    let corner = |row, col| {
        let (x, y) = layout.cell_origin(row, col);
        img.get_pixel(x + 3, y + 3).0
    };
    assert_eq!(corner(0, 0), viz::heat_color(1.0));
    assert_eq!(corner(0, 5), viz::heat_color(0.0));
    assert_eq!(
        corner(3, 3),
        viz::heat_color(0.8),
        "row-normalised, whatever the row's size"
    );
    assert_eq!(corner(9, 9), viz::heat_color(0.8));
    assert_eq!(corner(4, 5), viz::heat_color(0.2));
}

#[test]
fn confusion_matrix_odd_inputs() {
    // Missing, long and empty names; an empty row; many classes.
    let mut cm = ConfusionMatrix::new(3);
    cm.add(0, 1).unwrap();
    let names = vec![
        "a class name far too long to fit the margin".to_string(),
        String::new(),
    ];
    let path = out("confusion_odd");
    viz::save_confusion_matrix(&cm, &names, "", &path).unwrap();
    let layout = viz::confusion_matrix_layout(3);
    assert_eq!(open(&path).dimensions(), (layout.width, layout.height));

    let path = out("confusion_many");
    viz::save_confusion_matrix(&ConfusionMatrix::new(100), &[], "100 classes", &path).unwrap();
    assert_eq!(viz::confusion_matrix_layout(100).cell, 16);
    assert_eq!(open(&path).width(), viz::confusion_matrix_layout(100).width);

    let broken = ConfusionMatrix {
        num_classes: 3,
        counts: vec![0; 8],
    };
    assert!(viz::save_confusion_matrix(&broken, &[], "", &out("confusion_broken")).is_err());
    assert!(
        viz::save_confusion_matrix(&ConfusionMatrix::new(0), &[], "", &out("confusion_0")).is_err()
    );
}

fn count_color(img: &RgbImage, color: [u8; 3]) -> usize {
    img.pixels().filter(|p| p.0 == color).count()
}

#[test]
fn training_curves() {
    let loss = [2.0, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7, 0.65, 0.6, 0.55];
    let acc = [0.3, 0.45, 0.55, 0.6, 0.65, 0.7, 0.72, 0.75, 0.77, 0.78];
    let val_loss = [2.1, 1.7, 1.5, 1.4, 1.3, 1.3, 1.25, 1.3, 1.3, 1.35];
    let val_acc = [0.25, 0.4, 0.48, 0.52, 0.55, 0.57, 0.58, 0.58, 0.59, 0.59];
    let curves = Curves {
        metric: "accuracy",
        loss: &loss,
        accuracy: &acc,
        val_loss: &val_loss,
        val_accuracy: &val_acc,
    };
    let path = out("curves");
    viz::save_training_curves(&curves, "10 epochs", &path).unwrap();
    let img = open(&path);
    assert_eq!(img.dimensions(), viz::CURVES_SIZE);
    assert!(count_color(&img, viz::TRAIN_COLOR) > 500);
    assert!(count_color(&img, viz::VAL_COLOR) > 500);
}

#[test]
fn training_curves_one_epoch_no_validation_and_nan() {
    let one = Curves {
        metric: "accuracy",
        loss: &[2.3],
        accuracy: &[0.1],
        val_loss: &[],
        val_accuracy: &[],
    };
    let path = out("curves_one");
    viz::save_training_curves(&one, "one epoch", &path).unwrap();
    let img = open(&path);
    assert_eq!(img.dimensions(), viz::CURVES_SIZE);
    assert!(
        count_color(&img, viz::TRAIN_COLOR) > 0,
        "the single point is drawn"
    );
    assert_eq!(
        count_color(&img, viz::VAL_COLOR),
        0,
        "no validation, no orange"
    );

    let nan = [f32::NAN, 1.0, f32::INFINITY, 0.5];
    let all_nan = [f32::NAN; 3];
    let odd = Curves {
        metric: "accuracy",
        loss: &nan,
        accuracy: &all_nan,
        val_loss: &[1.0, 1.0],
        val_accuracy: &[],
    };
    let path = out("curves_nan");
    viz::save_training_curves(&odd, "NaN", &path).unwrap();
    assert_eq!(open(&path).dimensions(), viz::CURVES_SIZE);

    let none = Curves {
        metric: "accuracy",
        loss: &[],
        accuracy: &[],
        val_loss: &[],
        val_accuracy: &[],
    };
    assert!(viz::save_training_curves(&none, "empty", out("curves_empty")).is_err());
}
