//! The Sequential API: Keras-exact summaries, GPU training equal to CPU-reference training,
//! convergence on a generated problem, the execution model (one submit per step, nothing
//! allocated per step), weights on disk, and clear errors for bad input.

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgcnn::experiments::{NAMES, experiment};
use wgcnn::prelude::*;
use wgcnn::testing::{assert_close, random_labels, random_vec};

type R = anyhow::Result<()>;

fn compiled(
    m: impl Into<Model>,
    device: Device,
    opt: Optimizer,
    seed: u64,
) -> anyhow::Result<Model> {
    let mut m = m.into();
    m.set_device(device).set_seed(seed);
    m.compile(
        opt,
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
    )?;
    Ok(m)
}

fn gpu() -> Device {
    Device::gpu().expect("a GPU adapter (lavapipe in CI) is required")
}

#[test]
fn lecture_models_have_keras_parameter_counts_and_shapes() -> R {
    type Row = (
        &'static str,
        usize,
        &'static [usize],
        &'static [&'static [usize]],
    );
    let expect: [Row; 5] = [
        ("mnist-dense", 7_850, &[0, 7_850], &[&[784], &[10]]),
        (
            "mnist-conv",
            433_290,
            &[640, 0, 432_650],
            &[&[26, 26, 64], &[43_264], &[10]],
        ),
        (
            "cifar-conv",
            1_845_354,
            &[1_792, 0, 1_843_232, 330],
            &[&[30, 30, 64], &[57_600], &[32], &[10]],
        ),
        (
            "cifar-pool",
            462_954,
            &[1_792, 0, 0, 460_832, 330],
            &[&[30, 30, 64], &[15, 15, 64], &[14_400], &[32], &[10]],
        ),
        (
            "cifar-deep",
            564_426,
            &[1_792, 0, 36_928, 0, 0, 524_416, 1_290],
            &[
                &[32, 32, 64],
                &[16, 16, 64],
                &[16, 16, 64],
                &[8, 8, 64],
                &[4_096],
                &[128],
                &[10],
            ],
        ),
    ];
    for (name, total, per_layer, shapes) in expect {
        let m = experiment(name)?.model()?;
        assert_eq!(m.count_params(), total, "{name}");
        let counts: Vec<usize> = m.nodes().iter().map(|n| n.param_count()).collect();
        assert_eq!(counts, per_layer, "{name}");
        let outs: Vec<&[usize]> = m.nodes().iter().map(|n| n.out_shape.as_slice()).collect();
        assert_eq!(outs, shapes, "{name}");
        let s = m.summary();
        let total_line = format!("Total params: {}", wgcnn::layers::thousands(total));
        assert!(
            s.contains(&total_line) && s.contains("Non-trainable params: 0"),
            "{name}:\n{s}"
        );
    }
    assert_eq!(NAMES.len(), 9); // with mnist-bn, cifar-resnet20 (tests/graph.rs), mnist-mobile and mnist-unet
    Ok(())
}

#[test]
fn batchnorm_model_has_keras_parameter_counts() -> R {
    // Keras 3 counts 35,210 parameters for mnist-bn, 192 of them non-trainable (the moving
    // means and variances of the two BatchNormalization layers).
    let m = experiment("mnist-bn")?.model()?;
    let counts: Vec<usize> = m.nodes().iter().map(|n| n.param_count()).collect();
    assert_eq!(counts, [320, 128, 0, 0, 18_496, 256, 0, 0, 0, 16_010]);
    assert_eq!(m.count_params(), 35_210);
    assert_eq!(m.count_trainable_params(), 35_018);
    let s = m.summary();
    for line in [
        " batch_normalization (BatchN  (None, 26, 26, 32)       128       ",
        "Total params: 35,210",
        "Trainable params: 35,018",
        "Non-trainable params: 192",
    ] {
        assert!(s.contains(line), "{line:?} not in\n{s}");
    }
    let m = compiled(m, Device::Cpu, Optimizer::adam(), 0)?;
    let names: Vec<String> = m.get_weights()?.into_iter().map(|w| w.name).collect();
    assert_eq!(
        &names[2..6],
        [
            "batch_normalization/gamma",
            "batch_normalization/beta",
            "batch_normalization/moving_mean",
            "batch_normalization/moving_variance"
        ]
    );
    Ok(())
}

/// Keras' BatchNormalization semantics, checked by hand on one layer: training normalises
/// with the batch's statistics and folds them into the moving ones; evaluate and predict
/// use the moving ones.
#[test]
fn batchnorm_trains_on_batch_statistics_and_infers_with_moving_ones() -> R {
    let (n, c) = (6, 3);
    let x: Vec<f32> = random_vec(n * c, 40)
        .iter()
        .map(|v| 2.0 + 3.0 * v)
        .collect();
    let y = random_labels(n, 2, 41);
    for device in [gpu(), Device::Cpu] {
        let mut m = Sequential::new();
        m.add(BatchNormalization::new().momentum(0.75).input_shape(&[c]))?;
        m.add(Dense::new(2).activation(Softmax))?;
        // lr 0: the one step changes nothing but the moving statistics.
        let mut m = compiled(m, device, Optimizer::sgd(0.0), 3)?;
        let cfg = FitConfig {
            epochs: 1,
            batch_size: n,
            shuffle: false,
            verbose: false,
            ..Default::default()
        };
        m.fit(&x, &y, &cfg)?;
        let w = m.get_weights()?;
        let (mm, mv) = (&w[2].values, &w[3].values);
        for ch in 0..c {
            let col: Vec<f64> = (0..n).map(|r| f64::from(x[r * c + ch])).collect();
            let mean = col.iter().sum::<f64>() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            // moving ← 0.75·moving + 0.25·batch, from 0 and 1, with the biased variance.
            assert!((f64::from(mm[ch]) - 0.25 * mean).abs() < 1e-5, "mean {ch}");
            assert!(
                (f64::from(mv[ch]) - (0.75 + 0.25 * var)).abs() < 1e-4,
                "var {ch}"
            );
        }
        // Inference: the moving statistics (γ = 1, β = 0 untouched at lr 0).
        let out = m.layer_outputs(&x[..c])?;
        for ch in 0..c {
            let want = (x[ch] - mm[ch]) / (mv[ch] + 1e-3).sqrt();
            assert!((out[0].values[ch] - want).abs() < 1e-4, "predict {ch}");
        }
    }
    Ok(())
}

#[test]
fn summary_text_is_keras_format() -> R {
    // tf.keras 2.x prints exactly this for the lecture's cifar-pool model (the long
    // "max_pooling2d (MaxPooling2D)" wraps, as in Keras).
    let want = "\
Model: \"sequential\"
_________________________________________________________________
 Layer (type)                Output Shape              Param #   
=================================================================
 conv2d (Conv2D)             (None, 30, 30, 64)        1792      
                                                                 
 max_pooling2d (MaxPooling2D  (None, 15, 15, 64)       0         
 )                                                               
                                                                 
 flatten (Flatten)           (None, 14400)             0         
                                                                 
 dense (Dense)               (None, 32)                460832    
                                                                 
 dense_1 (Dense)             (None, 10)                330       
                                                                 
=================================================================
Total params: 462,954
Trainable params: 462,954
Non-trainable params: 0
_________________________________________________________________
";
    let got = experiment("cifar-pool")?.model()?.summary();
    assert_eq!(got, want, "\n{got}");
    Ok(())
}

#[test]
fn layers_that_do_not_fit_are_errors_naming_both_shapes() {
    let mut m = Sequential::new();
    m.add(Conv2D::new(8, 3).input_shape(&[3, 3, 1])).unwrap();
    let err = m.add(Conv2D::new(8, 5)).err().unwrap().to_string();
    assert!(
        err.contains("conv2d_1") && err.contains("(None, 1, 1, 8)") && err.contains("window of 5"),
        "{err}"
    );
    let err = m.add(Dense::new(10)).err().unwrap().to_string();
    assert!(err.contains("dense") && err.contains("Flatten"), "{err}");
    let mut m = Sequential::new();
    let err = m.add(Dense::new(10)).err().unwrap().to_string();
    assert!(err.contains("input shape"), "{err}");
    let mut m = Sequential::new();
    m.add(Dense::new(4).input_shape(&[6])).unwrap();
    let err = m.add(MaxPooling2D::new(2)).err().unwrap().to_string();
    assert!(
        err.contains("max_pooling2d") && err.contains("(None, 4)"),
        "{err}"
    );
}

#[test]
fn every_layer_builds_the_same_way_and_may_come_first() -> R {
    // Rectangular pools, strides and padding on the builder; any layer takes the input shape.
    let mut m = Sequential::new();
    m.add(
        MaxPooling2D::new(2)
            .pool_size(2, 3)
            .strides(1, 1)
            .padding(Same)
            .input_shape(&[7, 9, 2]),
    )?;
    m.add(GlobalAveragePooling2D::new())?;
    let outs: Vec<&[usize]> = m.nodes().iter().map(|n| n.out_shape.as_slice()).collect();
    assert_eq!(outs, [&[7, 9, 2][..], &[2]]);
    assert_eq!(m.nodes()[1].name, "global_average_pooling2d");
    // Input first: it declares the shape and adds no layer.
    let mut m = Sequential::new();
    m.add(Input::new(&[5, 5, 3]))?;
    m.add(BatchNormalization::new())?;
    m.add(GlobalMaxPooling2D::new())?;
    assert_eq!(m.nodes().len(), 2);
    assert_eq!(m.count_params(), 12);
    assert_eq!(m.count_trainable_params(), 6);
    let err = m.add(Input::new(&[3])).err().unwrap().to_string();
    assert!(err.contains("Input"), "{err}");
    let mut m = Sequential::new();
    m.add(Input::new(&[4]))?;
    let err = m
        .add(Dense::new(2).input_shape(&[4]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("already declared"), "{err}");
    for first in [
        Layer::from(Dropout::new(0.5).input_shape(&[6])),
        Layer::from(Activation::new(Relu).input_shape(&[6])),
        Layer::from(Flatten::new().input_shape(&[6])),
        Layer::from(BatchNormalization::new().input_shape(&[6])),
    ] {
        let mut m = Sequential::new();
        m.add(first)?;
        assert_eq!(m.input_shape(), Some(&[6][..]));
    }
    let err = Sequential::new()
        .add(GlobalMaxPooling2D::new().input_shape(&[6]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("3-D input"), "{err}");
    assert!(Sequential::new().add(Input::new(&[0, 3])).is_err());
    Ok(())
}

/// A small model touching every layer type and activation.
fn small_model(with_dropout: bool) -> Sequential {
    let mut m = Sequential::new();
    m.add(Conv2D::new(4, 3).activation(Relu).input_shape(&[9, 8, 2]))
        .unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(
        Conv2D::new(5, 2)
            .padding(Same)
            .strides(1, 2)
            .activation(Tanh),
    )
    .unwrap();
    m.add(AveragePooling2D::new(2).padding(Same)).unwrap();
    m.add(Flatten::new()).unwrap();
    if with_dropout {
        m.add(Dropout::new(0.25)).unwrap();
    }
    m.add(Dense::new(7).activation(Sigmoid)).unwrap();
    m.add(Activation::new(Relu)).unwrap();
    m.add(Dense::new(3).activation(Softmax)).unwrap();
    m
}

/// Beyond the lecture: a model that starts with a pooling (Input first), with
/// BatchNormalization after a conv and after a dense layer, rectangular pools and a global
/// pooling head (`global`: average or max).
fn modern_model(global_max: bool) -> Sequential {
    let mut m = Sequential::new();
    m.add(Input::new(&[9, 8, 2])).unwrap();
    m.add(AveragePooling2D::new(2).strides(1, 1).padding(Same))
        .unwrap();
    m.add(Conv2D::new(4, 3)).unwrap();
    m.add(BatchNormalization::new().momentum(0.8)).unwrap();
    m.add(Activation::new(Relu)).unwrap();
    m.add(MaxPooling2D::new(2).pool_size(2, 1)).unwrap();
    m.add(Conv2D::new(6, 2).padding(Same)).unwrap();
    if global_max {
        m.add(GlobalMaxPooling2D::new()).unwrap();
    } else {
        m.add(GlobalAveragePooling2D::new()).unwrap();
    }
    m.add(Dense::new(5)).unwrap();
    m.add(BatchNormalization::new().momentum(0.5).epsilon(1e-2))
        .unwrap();
    m.add(Activation::new(Tanh)).unwrap();
    m.add(Dense::new(3).activation(Softmax)).unwrap();
    m
}

#[test]
fn gpu_training_matches_cpu_reference_training() -> R {
    let n = 40; // batch 16 → steps of 16, 16 and a partial 8
    let x = random_vec(n * 9 * 8 * 2, 1);
    let y = random_labels(n, 3, 2);
    // The conv bias right before a BatchNormalization has a gradient of zero up to rounding
    // (the normalisation removes any per-channel shift), which Adam and RMSprop would scale
    // up to steps of ±lr in either direction: the models with it train with SGD here (their
    // updates stay proportional to the gradient), the adaptive rules on the small model.
    type Case = (fn(bool) -> Sequential, bool, Optimizer);
    let cases: [Case; 6] = [
        (small_model, false, Optimizer::adam().with_lr(0.01)),
        (
            small_model,
            true,
            Optimizer::sgd(0.1).momentum(0.9).nesterov(true),
        ),
        (small_model, false, Optimizer::rmsprop().momentum(0.5)),
        (
            small_model,
            false,
            Optimizer::adamw()
                .weight_decay(0.05)
                .learning_rate(LearningRate::cosine_decay(0.01, 5)),
        ),
        (
            modern_model,
            false,
            Optimizer::sgd(0.05)
                .weight_decay(0.01)
                .learning_rate(LearningRate::piecewise_constant(&[2], &[0.05, 0.01])),
        ),
        (
            modern_model,
            true,
            Optimizer::sgd(0.1)
                .momentum(0.9)
                .learning_rate(LearningRate::exponential_decay(0.1, 3, 0.5)),
        ),
    ];
    for (model, variant, opt) in cases {
        let mut g = compiled(model(variant), gpu(), opt.clone(), 7)?;
        let mut c = compiled(model(variant), Device::Cpu, opt.clone(), 7)?;
        let cfg = FitConfig {
            epochs: 2,
            batch_size: 16,
            verbose: false,
            ..Default::default()
        };
        let hg = g.fit(&x, &y, &cfg)?;
        let hc = c.fit(&x, &y, &cfg)?;
        assert_eq!(g.steps_taken(), 6);
        for (gw, cw) in g.get_weights()?.iter().zip(c.get_weights()?) {
            assert_close(
                &format!("{} after 6 steps {opt:?}", gw.name),
                &gw.values,
                &cw.values,
                1e-4,
                1e-3,
            )?;
        }
        assert_close("history loss", &hg.loss, &hc.loss, 1e-4, 1e-3)?;
        assert_close("history accuracy", &hg.accuracy, &hc.accuracy, 1e-6, 0.0)?;
        let (lg, ag) = g.evaluate(&x, &y)?;
        let (lc, ac) = c.evaluate(&x, &y)?;
        assert_close("evaluate", &[lg, ag], &[lc, ac], 1e-4, 1e-3)?;
        let pg = g.predict(&x, 16)?;
        assert_close("predict", &pg, &c.predict(&x, 16)?, 1e-5, 1e-3)?;
        assert_eq!(pg.len(), n * 3);
    }
    Ok(())
}

/// Oriented bars: class 0 horizontal, 1 vertical, 2 diagonal, at random positions, with
/// noise. A conv model must learn it; a model that ignores the image cannot.
fn bars(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let (h, w) = (12, 12);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = vec![0f32; n * h * w];
    let mut y = vec![0u32; n];
    for i in 0..n {
        let class = rng.random_range(0..3u32);
        y[i] = class;
        let img = &mut x[i * h * w..(i + 1) * h * w];
        img.iter_mut().for_each(|v| *v = rng.random_range(0.0..0.3));
        let (r, c) = (rng.random_range(2..h - 2), rng.random_range(2..w - 2));
        for t in -2i32..=2 {
            let (rr, cc) = match class {
                0 => (r as i32, c as i32 + t),
                1 => (r as i32 + t, c as i32),
                _ => (r as i32 + t, c as i32 + t),
            };
            img[rr as usize * w + cc as usize] = 1.0;
        }
    }
    (x, y)
}

#[test]
fn small_conv_model_converges_on_generated_bars() -> R {
    let (x, y) = bars(1200, 3);
    let (xt, yt) = bars(300, 4);
    let mut m = Sequential::new();
    m.add(Conv2D::new(8, 3).activation(Relu).input_shape(&[12, 12, 1]))?;
    m.add(MaxPooling2D::new(2))?;
    m.add(Flatten::new())?;
    m.add(Dense::new(3).activation(Softmax))?;
    let mut m = compiled(m, gpu(), Optimizer::adam().with_lr(0.01), 1)?;
    let h = m.fit(
        &x,
        &y,
        &FitConfig {
            epochs: 6,
            batch_size: 32,
            validation_data: Some((&xt, &yt)),
            verbose: false,
            ..Default::default()
        },
    )?;
    let (_, acc) = m.evaluate(&xt, &yt)?;
    assert!(acc >= 0.95, "test accuracy {acc}, history {h:?}");
    assert!(h.loss.last() < h.loss.first(), "{h:?}");
    assert_eq!(h.val_accuracy.len(), 6);
    Ok(())
}

#[test]
fn mirror_horizontal_reverses_columns_and_keeps_channels() {
    // A 2×3 image with 2 channels; pixel (r, c) holds [10r + c, 100 + 10r + c].
    let px = |r: usize, c: usize| [(10 * r + c) as f32, (100 + 10 * r + c) as f32];
    let src: Vec<f32> = (0..2)
        .flat_map(|r| (0..3).flat_map(move |c| px(r, c)))
        .collect();
    let want: Vec<f32> = (0..2)
        .flat_map(|r| (0..3).flat_map(move |c| px(r, 2 - c)))
        .collect();
    let mut dst = vec![f32::NAN; src.len()];
    wgcnn::model::mirror_horizontal(&src, &mut dst, [2, 3, 2]);
    assert_eq!(dst, want);
}

/// Class 0: the left half is bright; class 1: the right half. Mirroring turns one class
/// into the other, so with random flips the labels cannot be learnt (training accuracy
/// near 1/2), while without them the problem is trivial. Flipping every image, or none,
/// would show as accuracy near 1 in both runs.
#[test]
fn horizontal_flip_mirrors_about_half_the_training_images() -> R {
    let (n, h, w) = (640, 4, 6);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let y: Vec<u32> = (0..n).map(|_| rng.random_range(0..2u32)).collect();
    let x: Vec<f32> = y
        .iter()
        .flat_map(|&class| (0..h * w).map(move |i| (i % w >= w / 2) as u32 == class))
        .map(|bright| f32::from(u8::from(bright)) + rng.random_range(0.0..0.3))
        .collect();
    let train = |horizontal_flip| -> anyhow::Result<f32> {
        let mut m = Sequential::new();
        m.add(Flatten::new().input_shape(&[h, w, 1]))?;
        m.add(Dense::new(2).activation(Softmax))?;
        let mut m = compiled(m, gpu(), Optimizer::adam().with_lr(0.05), 2)?;
        let cfg = FitConfig {
            epochs: 3,
            horizontal_flip,
            verbose: false,
            ..Default::default()
        };
        Ok(*m.fit(&x, &y, &cfg)?.accuracy.last().unwrap())
    };
    let plain = train(false)?;
    assert!(plain >= 0.95, "without flips: training accuracy {plain}");
    let flipped = train(true)?;
    assert!(
        (0.35..=0.65).contains(&flipped),
        "with flips: training accuracy {flipped}"
    );
    Ok(())
}

#[test]
fn a_training_step_is_one_submit_and_allocates_nothing() -> R {
    // A device of its own: the shared one's counters move with every parallel test.
    let g = std::sync::Arc::new(wgcnn::Gpu::new()?);
    let d = Device::Gpu(g.clone());
    let n = 64 * 10;
    let x = random_vec(n * 9 * 8 * 2, 5);
    let y = random_labels(n, 3, 6);
    let mut m = compiled(small_model(true), d, Optimizer::adam(), 3)?;
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 64,
        verbose: false,
        ..Default::default()
    };
    m.fit(&x, &y, &cfg)?; // first epoch builds the graph
    let (b0, s0, r0) = g.counters.snapshot();
    m.fit(&x, &y, &cfg)?;
    let (b1, s1, r1) = g.counters.snapshot();
    assert_eq!(b1 - b0, 0, "buffers created during an epoch");
    assert_eq!(s1 - s0, 10 + (r1 - r0), "submits: 10 steps + read-backs");
    assert!(
        r1 - r0 <= 1,
        "read-backs in a quiet epoch of 10 steps: {}",
        r1 - r0
    );
    Ok(())
}

#[test]
fn weights_round_trip_through_safetensors() -> R {
    let dir = std::env::temp_dir().join(format!("wgcnn-weights-{}", std::process::id()));
    let path = dir.join("small.safetensors");
    let x = random_vec(8 * 9 * 8 * 2, 9);
    let mut a = compiled(small_model(false), gpu(), Optimizer::adam(), 11)?;
    a.save_weights(&path)?;
    let mut b = compiled(small_model(false), gpu(), Optimizer::adam(), 12)?;
    assert_ne!(a.predict(&x, 8)?, b.predict(&x, 8)?);
    b.load_weights(&path)?;
    assert_eq!(a.predict(&x, 8)?, b.predict(&x, 8)?);
    let names: Vec<String> = a.get_weights()?.into_iter().map(|w| w.name).collect();
    assert_eq!(names[0], "conv2d/kernel");
    assert_eq!(names[1], "conv2d/bias");

    // Another architecture: the mismatched tensor is named.
    let mut other = Sequential::new();
    other.add(Conv2D::new(6, 3).input_shape(&[9, 8, 2]))?;
    other.add(Flatten::new())?;
    other.add(Dense::new(3).activation(Softmax))?;
    let mut other = compiled(other, gpu(), Optimizer::adam(), 1)?;
    let err = format!("{:#}", other.load_weights(&path).unwrap_err());
    assert!(
        err.contains("conv2d/kernel") && err.contains("[3, 3, 2, 6]"),
        "{err}"
    );

    let err = format!(
        "{:#}",
        b.load_weights(dir.join("missing.safetensors")).unwrap_err()
    );
    assert!(err.contains("missing.safetensors"), "{err}");
    std::fs::write(
        dir.join("corrupt.safetensors"),
        b"\x10\0\0\0\0\0\0\0{not json",
    )?;
    let err = format!(
        "{:#}",
        b.load_weights(dir.join("corrupt.safetensors")).unwrap_err()
    );
    assert!(
        err.contains("corrupt.safetensors") && err.contains("not a safetensors file"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn bad_input_is_a_clear_error() -> R {
    let mut m = compiled(small_model(false), gpu(), Optimizer::adam(), 1)?;
    let sample = 9 * 8 * 2;
    let x = random_vec(4 * sample, 1);
    let cfg = FitConfig {
        verbose: false,
        ..Default::default()
    };
    let msg = |r: anyhow::Result<History>| r.unwrap_err().to_string();
    assert!(msg(m.fit(&[], &[], &cfg)).contains("empty"));
    assert!(msg(m.fit(&x, &[0, 1, 2], &cfg)).contains("4 samples but 3 labels"));
    assert!(msg(m.fit(&x, &[0, 1, 2, 3], &cfg)).contains("label 3 at index 3"));
    assert!(msg(m.fit(&x[..sample * 2 - 1], &[0, 1], &cfg)).contains("whole number of samples"));
    assert!(
        msg(m.fit(
            &x,
            &[0, 1, 2, 0],
            &FitConfig {
                batch_size: 0,
                ..cfg.clone()
            }
        ))
        .contains("batch_size")
    );
    let bad_val = FitConfig {
        validation_data: Some((&x, &[0])),
        ..cfg.clone()
    };
    assert!(msg(m.fit(&x, &[0, 1, 2, 0], &bad_val)).contains("validation_data"));
    let mut flat = Sequential::new();
    flat.add(Dense::new(3).input_shape(&[sample]))?;
    let mut flat = compiled(flat, gpu(), Optimizer::adam(), 1)?;
    let flip = FitConfig {
        horizontal_flip: true,
        ..cfg.clone()
    };
    assert!(msg(flat.fit(&x, &[0, 1, 2, 0], &flip)).contains("(height, width, channels)"));

    // A diverging loss stops training with the epoch and step.
    let mut diverging = compiled(small_model(false), gpu(), Optimizer::sgd(1e38), 1)?;
    let big: Vec<f32> = x.iter().map(|v| v * 1e30).collect();
    let err = msg(diverging.fit(
        &big,
        &[0, 1, 2, 0],
        &FitConfig {
            epochs: 3,
            batch_size: 2,
            ..cfg.clone()
        },
    ));
    assert!(
        err.contains("epoch") && err.contains("step") && err.contains("loss became"),
        "{err}"
    );

    let mut uncompiled = small_model(false);
    assert!(
        uncompiled
            .predict(&x, 2)
            .unwrap_err()
            .to_string()
            .contains("compile")
    );
    Ok(())
}

/// The lecture's own shapes (long split-K dW of a first layer, the narrow classifier core,
/// tiling max pools fused with relu, flatten views): a few steps on GPU and CPU agree.
#[test]
fn lecture_models_train_like_the_cpu_reference() -> R {
    for name in ["mnist-conv", "cifar-pool", "cifar-deep"] {
        let e = experiment(name)?;
        let [h, w, ch] = e.input_shape();
        let n = 48; // a step of 32 and a partial one of 16
        let x: Vec<f32> = random_vec(n * h * w * ch, 3)
            .iter()
            .map(|v| v.abs())
            .collect();
        let y = random_labels(n, 10, 4);
        // Plain SGD: a weight's change is proportional to its gradient (Adam's first steps
        // move every weight by about ±lr whatever the gradient's size).
        let sgd = Optimizer::sgd(0.1);
        let mut g = compiled(e.model()?, gpu(), sgd.clone(), 5)?;
        let mut c = compiled(e.model()?, Device::Cpu, sgd, 5)?;
        let cfg = FitConfig {
            epochs: 1,
            batch_size: 32,
            verbose: false,
            ..Default::default()
        };
        let hg = g.fit(&x, &y, &cfg)?;
        let hc = c.fit(&x, &y, &cfg)?;
        for (gw, cw) in g.get_weights()?.iter().zip(c.get_weights()?) {
            assert_close(
                &format!("{name}: {} after 2 steps", gw.name),
                &gw.values,
                &cw.values,
                1e-4,
                1e-3,
            )?;
        }
        assert_close(&format!("{name}: loss"), &hg.loss, &hc.loss, 1e-4, 1e-3)?;
    }
    Ok(())
}

/// Sizes are checked, overflow-checked, before anything is allocated: an oversized layer
/// is an error naming it and its parameter, never an aborted process, and a parameter over
/// the binding limit does not suggest a smaller batch (which could not help).
#[test]
fn oversized_layers_are_errors_naming_the_layer() -> R {
    let dense = |units: usize, device: Device| -> anyhow::Result<Model> {
        let mut m = Sequential::new();
        m.add(Input::new(&[16]))?;
        m.add(Dense::new(units).activation(Softmax))?;
        compiled(m, device, Optimizer::adam(), 1)
    };
    for units in [1 << 24, 1 << 40] {
        let err = format!("{:#}", dense(units, gpu()).err().expect("too large"));
        assert!(
            err.contains("layer 'dense'")
                && err.contains("parameter 'kernel'")
                && err.contains(&format!("[16, {units}]"))
                && err.contains("binds at most")
                && !err.contains("batch"),
            "{err}"
        );
    }
    if wgcnn::model::host_memory_available().is_some() {
        let err = format!(
            "{:#}",
            dense(1 << 40, Device::Cpu).err().expect("too large")
        );
        assert!(err.contains("host memory"), "{err}");
    }
    // Products that wrap are errors, not "a zero dimension".
    let mut m = Sequential::new();
    let err = m
        .add(Flatten::new().input_shape(&[1 << 32, 1 << 32, 1]))
        .err()
        .expect("overflow")
        .to_string();
    assert!(
        err.contains("more elements than can be counted") && !err.contains("zero"),
        "{err}"
    );
    let mut m = Sequential::new();
    m.add(Input::new(&[28, 28, 1]))?;
    let err = m
        .add(Conv2D::new(1 << 60, 3))
        .err()
        .expect("overflow")
        .to_string();
    assert!(err.contains("more elements than can be counted"), "{err}");
    Ok(())
}

/// A model file whose description claims a huge layer (crafted or corrupted) loads as an
/// error on either device.
#[test]
fn a_model_file_claiming_a_huge_layer_does_not_load() -> R {
    let dir = std::env::temp_dir().join(format!("wgcnn-huge-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (file, _) = common::small_model_files(&dir, "mnist-dense", 1 << 40);
    for device in [Device::Cpu, gpu()] {
        let err = format!("{:#}", Model::load_on(&file, Some(device)).err().unwrap());
        assert!(err.contains("layer 'dense'"), "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn rescaling_and_normalization_follow_keras_and_train_alike_on_gpu_and_cpu() -> R {
    // Keras 3: Rescaling(1/127.5, offset=-1) then Normalization(mean, variance):
    // (x·s + o − mean) / max(√variance, 1e-7) per channel; no parameters.
    let (mean, var) = ([0.1f32, -0.2, 0.0], [4.0f32, 0.25, 0.0]);
    let build = || -> anyhow::Result<Sequential> {
        let mut m = Sequential::new();
        m.add(Input::new(&[3, 3, 3]))?;
        m.add(Rescaling::new(1.0 / 127.5).offset(-1.0))?;
        m.add(Normalization::new(&mean, &var))?;
        Ok(m)
    };
    let m = build()?;
    let s = m.summary();
    assert!(
        s.contains(" rescaling (Rescaling)") && s.contains(" normalization (Normalizatio"),
        "{s}"
    );
    assert_eq!(m.count_params(), 0);
    let x: Vec<f32> = (0..2 * 27).map(|i| (i * 37 % 256) as f32).collect();
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i % 3;
            (v * (1.0 / 127.5) - 1.0 - mean[c]) / var[c].sqrt().max(1e-7)
        })
        .collect();
    // The layers' outputs, on the GPU and the CPU reference (a head makes it compile).
    for device in [gpu(), Device::Cpu] {
        let mut probe = build()?;
        probe.add(Flatten::new())?;
        probe.add(Dense::new(2).activation(Softmax))?;
        let mut probe = compiled(probe, device, Optimizer::adam(), 1)?;
        for (i, img) in x.chunks(27).enumerate() {
            let outs = probe.layer_outputs(img)?;
            let norm = outs
                .iter()
                .find(|o| o.name == "normalization")
                .expect("its output");
            assert_close(
                "normalization",
                &norm.values,
                &want[i * 27..(i + 1) * 27],
                1e-5,
                1e-5,
            )?;
        }
    }
    // Adapt: each channel's mean and population variance.
    let a = Normalization::adapt(&[1.0, 10.0, 3.0, 30.0], 2)?;
    assert_eq!((a.mean, a.variance), (vec![2.0, 20.0], vec![1.0, 100.0]));
    assert!(Normalization::adapt(&[1.0, 2.0, 3.0], 2).is_err());
    let mut bad = Sequential::new();
    bad.add(Input::new(&[2, 2, 3]))?;
    assert!(
        bad.add(Rescaling::per_channel(&[1.0, 2.0], &[0.0]))
            .is_err()
    );

    // Between two learning layers its input gradient runs: GPU against the CPU reference.
    let model = || -> anyhow::Result<Sequential> {
        let mut m = Sequential::new();
        m.add(Input::new(&[6, 6, 3]))?;
        m.add(Rescaling::new(1.0 / 255.0))?;
        m.add(Conv2D::new(4, 3).activation(Relu))?;
        m.add(Rescaling::per_channel(
            &[0.5, 2.0, 1.5, 3.0],
            &[0.1, -0.2, 0.0, 0.3],
        ))?;
        m.add(Normalization::new(&[0.2], &[1.5]))?;
        m.add(Flatten::new())?;
        m.add(Dense::new(3).activation(Softmax))?;
        Ok(m)
    };
    let xs: Vec<f32> = random_vec(12 * 108, 7)
        .iter()
        .map(|v| v.abs() * 255.0)
        .collect();
    let ys = random_labels(12, 3, 8);
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 4,
        verbose: false,
        ..Default::default()
    };
    // SGD, not Adam: Adam's per-weight normalisation would hide a gradient off by a
    // constant factor per channel.
    let mut g = compiled(model()?, gpu(), Optimizer::sgd(0.1), 3)?;
    let mut c = compiled(model()?, Device::Cpu, Optimizer::sgd(0.1), 3)?;
    let (hg, hc) = (g.fit(&xs, &ys, &cfg)?, c.fit(&xs, &ys, &cfg)?);
    assert_close("loss", &hg.loss, &hc.loss, 1e-5, 1e-4)?;
    for (wg, wc) in g.get_weights()?.iter().zip(c.get_weights()?) {
        assert_close(&wg.name, &wg.values, &wc.values, 1e-5, 1e-4)?;
    }
    Ok(())
}
