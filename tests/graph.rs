//! Layer graphs: Keras' functional `Model` (fan-out, residual `Add` after a projection,
//! `Concatenate`, a tensor merged with itself, every merge layer with two and three
//! inputs, a layer off every path to the output) trains on the GPU exactly like the CPU
//! reference, step for step, on every kernel family; the CPU reference's gradients through
//! such graphs match finite differences; shapes are checked when a layer is applied;
//! files round-trip, and files of the Sequential-only release still load.

use std::sync::Arc;
use wgcnn::gpu::{Gpu, Variant};
use wgcnn::ops::conv2d_transpose::conv2d_transpose_forward_cpu;
use wgcnn::ops::depthwise_conv2d::depthwise_conv2d_forward_cpu;
use wgcnn::prelude::*;
use wgcnn::testing::{assert_close, random_labels, random_vec};

type R = anyhow::Result<()>;

fn gpu() -> Device {
    Device::gpu().expect("a GPU adapter (lavapipe in CI) is required")
}

/// The default device and one forced onto every other GEMM family the adapter runs.
fn every_family() -> Vec<(String, Device)> {
    let main = Gpu::shared().expect("a GPU adapter");
    let mut out = vec![(format!("{:?}", main.variant), gpu())];
    for v in [
        Variant::Portable,
        Variant::Tiled,
        Variant::Subgroup,
        Variant::Texture,
    ] {
        if v == main.variant {
            continue;
        }
        match Gpu::with_variant(Some(v)) {
            Ok(g) => out.push((format!("{v:?}"), Device::Gpu(Arc::new(g)))),
            Err(e) => eprintln!("not testing the {v:?} family here: {e:#}"),
        }
    }
    out
}

const SHAPE: [usize; 3] = [9, 8, 2];

/// The graph cases, by name.
fn graph_model(case: &str) -> anyhow::Result<Model> {
    let inputs = input(&SHAPE)?;
    // Smooth from the first layer where finite differences check the whole graph at a
    // small step (relu's kinks would be crossed).
    let first = if matches!(case, "gelu" | "unet" | "frozen") {
        Tanh
    } else {
        Relu
    };
    let x = Conv2D::new(4, 3)
        .padding(Same)
        .activation(first)
        .apply(&inputs)?;
    let y = match case {
        // x read by a conv and by the Add (fan-out), a projection shortcut beside it.
        "residual" => {
            let y = Conv2D::new(4, 3)
                .padding(Same)
                .use_bias(false)
                .kernel_initializer(Initializer::HeNormal)
                .kernel_regularizer(l2(1e-2))
                .apply(&x)?;
            let y = BatchNormalization::new().momentum(0.9).apply(&y)?;
            let y = Add::new().apply(&[&x, &y])?;
            let y = Activation::new(Relu).apply(&y)?;
            let p = Conv2D::new(6, 1).strides(2, 2).apply(&y)?;
            let q = Conv2D::new(6, 3)
                .strides(2, 2)
                .padding(Same)
                .activation(Relu)
                .apply(&y)?;
            // q read by a dropout and by the Add after it: fan-out through a dropout.
            let dq = Dropout::new(0.25).apply(&q)?;
            Add::new().apply(&[&p, &dq, &q])?
        }
        "concatenate" => {
            let a = Conv2D::new(3, 1).activation(Tanh).apply(&x)?;
            let b = MaxPooling2D::new(1).apply(&x)?;
            let c = Concatenate::new().apply(&[&a, &b, &a])?;
            let h = Conv2D::new(2, 3).padding(Same).apply(&inputs)?;
            Concatenate::new()
                .axis(1)
                .apply(&[&c, &Conv2D::new(10, 1).apply(&h)?])?
        }
        // A tensor merged with itself, and a layer applied but off every path.
        "self" => {
            let _unused = Conv2D::new(7, 3).apply(&x)?;
            let y = Add::new().apply(&[&x, &x])?;
            Multiply::new().apply(&[&y, &x])?
        }
        "merges" => {
            let a = Conv2D::new(4, 1)
                .kernel_regularizer(l2(0.05))
                .use_bias(false)
                .apply(&x)?;
            let b = Conv2D::new(4, 3)
                .padding(Same)
                .activation(Sigmoid)
                .apply(&x)?;
            let m3 = Multiply::new().apply(&[&a, &b, &x])?;
            let av = Average::new().apply(&[&a, &b, &m3])?;
            let mx = Maximum::new().apply(&[&a, &b, &x])?;
            let mn = Minimum::new().apply(&[&av, &mx])?;
            let s = Subtract::new().apply(&[&mn, &b])?;
            let av2 = Average::new().apply(&[&s, &a])?;
            Maximum::new().apply(&[&av2, &mn, &b])?
        }
        // MobileNet's inverted residual block: expand 1×1, depthwise 3×3, project 1×1,
        // batch normalization after each, added to the block's input.
        "mobile" => {
            let e = Conv2D::new(8, 1).use_bias(false).apply(&x)?;
            let e = BatchNormalization::new().apply(&e)?;
            let e = Activation::new(Relu).apply(&e)?;
            let d = DepthwiseConv2D::new(3)
                .padding(Same)
                .use_bias(false)
                .apply(&e)?;
            let d = BatchNormalization::new().center(false).apply(&d)?;
            let d = Activation::new(Relu).apply(&d)?;
            let p = Conv2D::new(4, 1).use_bias(false).apply(&d)?;
            let p = BatchNormalization::new().scale(false).apply(&p)?;
            let y = Add::new().apply(&[&x, &p])?;
            // Neither gamma nor beta, over 3 channels (padded in the kernels).
            let q = Conv2D::new(3, 1).apply(&y)?;
            let q = BatchNormalization::new()
                .center(false)
                .scale(false)
                .apply(&q)?;
            Concatenate::new().apply(&[&y, &q])?
        }
        // Depthwise convolutions with a depth multiplier on odd channels (3 → padded), a
        // stride, a dilation, 'valid' padding, fused relu (tanh for finite differences,
        // where relu's kinks break them) and a separate sigmoid, an L2 penalty, and fan-out
        // into both.
        "depthwise" | "depthwise, smooth" => {
            let act = if case == "depthwise" { Relu } else { Tanh };
            let a = Conv2D::new(3, 1).apply(&x)?;
            let b = DepthwiseConv2D::new(3)
                .depth_multiplier(2)
                .strides(2, 2)
                .padding(Same)
                .activation(act)
                .depthwise_regularizer(l2(0.05))
                .apply(&a)?;
            let c = DepthwiseConv2D::new(2)
                .dilation_rate(2, 2)
                .depth_multiplier(3)
                .activation(Sigmoid)
                .depthwise_initializer(Initializer::HeUniform)
                .apply(&a)?;
            // A grouped convolution: 2 groups of 4 channels in, 4 filters each, fused relu.
            let g = Conv2D::new(8, 1).apply(&a)?;
            let g = Conv2D::new(8, 3)
                .groups(2)
                .padding(Same)
                .activation(act)
                .apply(&g)?;
            let b = Concatenate::new().apply(&[&b, &Conv2D::new(6, 1).strides(2, 2).apply(&g)?])?;
            // A separable convolution over odd channels with a multiplier, no bias.
            let e = SeparableConv2D::new(5, 3)
                .depth_multiplier(2)
                .padding(Same)
                .use_bias(false)
                .depthwise_regularizer(l2(0.05))
                .pointwise_regularizer(l2(0.02))
                .activation(act)
                .apply(&a)?;
            let b = GlobalAveragePooling2D::new().apply(&b)?;
            let c = GlobalAveragePooling2D::new().apply(&c)?;
            let e = GlobalAveragePooling2D::new().apply(&e)?;
            let y = Concatenate::new().apply(&[&b, &c, &e])?;
            let outputs = Dense::new(3).activation(Softmax).apply(&y)?;
            return Model::new(&[&inputs], &[&outputs]);
        }
        // Every activation, as `activation=` values and as layers with parameters.
        "activations" => {
            let a = Conv2D::new(4, 3)
                .padding(Same)
                .activation(Relu6)
                .apply(&x)?;
            let a = ReLU::new()
                .max_value(2.0)
                .negative_slope(0.1)
                .threshold(0.5)
                .apply(&a)?;
            let b = DepthwiseConv2D::new(3)
                .padding(Same)
                .activation(LeakyRelu)
                .apply(&a)?;
            let b = LeakyReLU::new().apply(&b)?;
            let c = Conv2D::new(4, 1).activation(Elu).apply(&b)?;
            let c = ELU::new().alpha(0.5).apply(&c)?;
            let d = Conv2D::new(4, 1).activation(Softplus).apply(&c)?;
            let e = Conv2D::new(4, 1).activation(Softsign).apply(&d)?;
            let f = Conv2D::new(4, 1).activation(HardSigmoid).apply(&e)?;
            let g = Activation::new(Relu6).apply(&f)?;
            // The activations whose derivative reads their input.
            let g = Conv2D::new(4, 1).activation(Gelu).apply(&g)?;
            let g = Activation::new(GeluApproximate).apply(&g)?;
            let g = DepthwiseConv2D::new(1).activation(Swish).apply(&g)?;
            let g = Activation::new(HardSwish).apply(&g)?;
            let h = SeparableConv2D::new(4, 3)
                .strides(2, 2)
                .padding(Same)
                .activation(Relu)
                .apply(&g)?;
            let c = MaxPooling2D::new(2).padding(Same).apply(&c)?;
            Add::new().apply(&[&h, &c])?
        }
        // Smooth activations whose derivative reads the input (finite differences).
        "gelu" => {
            let a = Conv2D::new(4, 3).activation(Gelu).apply(&x)?;
            let a = LayerNormalization::new().apply(&a)?;
            let b = Activation::new(GeluApproximate).apply(&a)?;
            let c = Dense::new(5)
                .activation(Silu)
                .apply(&Flatten::new().apply(&b)?)?;
            let c = LayerNormalization::new().apply(&c)?;
            let d = Activation::new(Gelu).apply(&c)?;
            let outputs = Dense::new(3).activation(Softmax).apply(&d)?;
            return Model::new(&[&inputs], &[&outputs]);
        }
        // A small U-Net: down, up (nearest), cropped to the skip's size and concatenated;
        // zero-padded into a 'valid' convolution; bilinear up-sampling on odd factors.
        "unet" => {
            let d = AveragePooling2D::new(2).padding(Same).apply(&x)?;
            let d = Conv2D::new(3, 3)
                .padding(Same)
                .dilation_rate(2, 1)
                .activation(Tanh)
                .apply(&d)?;
            let u = UpSampling2D::new(2).apply(&d)?;
            let u = Cropping2D::new(0).sides([[1, 0], [0, 0]]).apply(&u)?;
            // Learned up-sampling beside it: 'same' with a bias, 'valid' without.
            let t = Conv2DTranspose::new(5, 3)
                .strides(2, 2)
                .padding(Same)
                .activation(Sigmoid)
                .kernel_regularizer(l2(0.01))
                .apply(&d)?;
            let t = Cropping2D::new(0).sides([[0, 1], [0, 0]]).apply(&t)?;
            let v = Conv2DTranspose::new(2, 2)
                .strides(2, 2)
                .use_bias(false)
                .apply(&d)?;
            let v = Cropping2D::new(0).sides([[0, 1], [0, 0]]).apply(&v)?;
            let y = Concatenate::new().apply(&[&x, &u, &t, &v])?;
            let y = LayerNormalization::new().center(false).apply(&y)?;
            let z = ZeroPadding2D::new(0).sides([[1, 2], [0, 1]]).apply(&y)?;
            let z = Conv2D::new(4, 3).activation(Tanh).apply(&z)?;
            let w = UpSampling2D::new(0)
                .size(2, 3)
                .interpolation(Bilinear)
                .apply(&z)?;
            Cropping2D::new(2).apply(&w)?
        }
        // Frozen layers (transfer learning): a convolution and a batch normalization in
        // inference mode, between trainable ones, with an L2 penalty that must not count.
        "frozen" => {
            let a = Conv2D::new(4, 3)
                .padding(Same)
                .kernel_regularizer(l2(0.1))
                .activation(Tanh)
                .apply(&x)?;
            let b = BatchNormalization::new().apply(&a)?;
            let c = Conv2D::new(4, 1).activation(Tanh).apply(&b)?;
            let d = BatchNormalization::new().apply(&c)?;
            let y = GlobalAveragePooling2D::new().apply(&d)?;
            let outputs = Dense::new(3).activation(Softmax).apply(&y)?;
            let mut m = Model::new(&[&inputs], &[&outputs])?;
            m.set_trainable("conv2d_1", false)?;
            m.set_trainable("batch_normalization", false)?;
            m.set_trainable("batch_normalization_1", false)?;
            return Ok(m);
        }
        // Back from vectors to images: Reshape with an inferred dimension.
        "reshape" => {
            let v = Dense::new(32)
                .activation(Tanh)
                .apply(&Flatten::new().apply(&x)?)?;
            let r = Reshape::new(&[4, -1, 2]).apply(&v)?;
            Conv2D::new(3, 3).padding(Same).activation(Relu).apply(&r)?
        }
        other => anyhow::bail!("no case {other}"),
    };
    let y = GlobalAveragePooling2D::new().apply(&y)?;
    let outputs = Dense::new(3).activation(Softmax).apply(&y)?;
    Model::new(&[&inputs], &[&outputs])
}

fn compiled(mut m: Model, device: Device, opt: Optimizer) -> anyhow::Result<Model> {
    m.set_device(device).set_seed(11);
    m.compile(
        opt,
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
    )?;
    Ok(m)
}

#[test]
fn graph_models_train_like_the_cpu_reference() -> R {
    let n = 40; // batch 16: steps of 16, 16 and a partial 8
    let x = random_vec(n * SHAPE.iter().product::<usize>(), 1);
    let y = random_labels(n, 3, 2);
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 16,
        verbose: false,
        ..Default::default()
    };
    let families = every_family();
    for case in [
        "residual",
        "concatenate",
        "self",
        "merges",
        "mobile",
        "depthwise",
        "activations",
        "reshape",
        "unet",
        "frozen",
        "gelu",
    ] {
        // Every family for the richest graph, the default for the others.
        let devices = if case == "residual" {
            &families[..]
        } else {
            &families[..1]
        };
        // The optimizers' state forms and gradient clipping, through whole graphs.
        let opt = match case {
            "unet" => Optimizer::adam().amsgrad(true).global_clipnorm(0.5),
            "frozen" => Optimizer::rmsprop().centered(true).clipnorm(0.1),
            "gelu" => Optimizer::sgd(0.1).clipvalue(0.01),
            _ => Optimizer::sgd(0.1).momentum(0.9),
        };
        // Pretrained-like normalization scales and moving statistics (not 1 and 0), so
        // that a frozen layer's gamma and statistics matter to its gradient.
        let pretrained = |m: &mut Model| -> anyhow::Result<()> {
            let mut w = m.get_weights()?;
            for (k, t) in w.iter_mut().enumerate() {
                if t.name.ends_with("/gamma") || t.name.ends_with("/moving_variance") {
                    t.values = random_vec(t.values.len(), 40 + k as u64)
                        .iter()
                        .map(|v| 1.0 + 0.5 * v)
                        .collect();
                } else if t.name.ends_with("/moving_mean") {
                    t.values = random_vec(t.values.len(), 60 + k as u64);
                }
            }
            m.set_weights(&w)
        };
        let mut c = compiled(graph_model(case)?, Device::Cpu, opt.clone())?;
        pretrained(&mut c)?;
        let hc = c.fit(&x, &y, &cfg)?;
        let wc = c.get_weights()?;
        for (family, device) in devices {
            let mut g = compiled(graph_model(case)?, device.clone(), opt.clone())?;
            pretrained(&mut g)?;
            let hg = g.fit(&x, &y, &cfg)?;
            assert_eq!(g.steps_taken(), 6);
            for (gw, cw) in g.get_weights()?.iter().zip(&wc) {
                assert_eq!(gw.name, cw.name);
                let what = format!("{case} on {family}: {} after 6 steps", gw.name);
                assert_close(&what, &gw.values, &cw.values, 1e-4, 1e-3)?;
            }
            assert_close(&format!("{case} loss"), &hg.loss, &hc.loss, 1e-4, 1e-3)?;
            let pg = g.predict(&x, 16)?;
            let pc = c.predict(&x, 16)?;
            assert_close(&format!("{case} predict"), &pg, &pc, 1e-5, 1e-3)?;
            let (lg, _) = g.evaluate(&x, &y)?;
            let (lc, _) = c.evaluate(&x, &y)?;
            assert_close(&format!("{case} evaluate"), &[lg], &[lc], 1e-4, 1e-3)?;
        }
    }
    Ok(())
}

/// The CPU reference's gradients through fan-out and every merge layer, recovered from
/// one SGD step (w − w' = lr·∂L/∂w), against central differences of the loss.
#[test]
fn graph_gradients_match_finite_differences() -> R {
    let n = 6;
    let x = random_vec(n * SHAPE.iter().product::<usize>(), 3);
    let y = random_labels(n, 3, 4);
    for case in [
        "concatenate",
        "self",
        "merges",
        "depthwise, smooth",
        "gelu",
        "unet",
        "frozen",
    ] {
        // No dropout or batch statistics in these cases (frozen batch normalizations use
        // their moving ones): evaluate sees the training loss.
        let lr = 1.0;
        let mut m = compiled(graph_model(case)?, Device::Cpu, Optimizer::sgd(lr))?;
        let w0 = m.get_weights()?;
        m.train_on_batch(&x, &y)?;
        let w1 = m.get_weights()?;
        // The loss evaluate reports: cross-entropy plus the kernels' L2 penalties.
        let loss = |m: &mut Model, w: &[NamedTensor]| -> anyhow::Result<f64> {
            m.set_weights(w)?;
            Ok(f64::from(m.evaluate_batched(&x, &y, n)?.0))
        };
        // Frozen tensors (and moving statistics) stay as they were; the others' step is
        // checked below.
        let fixed: Vec<String> = m
            .nodes()
            .iter()
            .flat_map(|n| {
                n.params()
                    .into_iter()
                    .filter(|p| !p.trainable)
                    .map(move |p| format!("{}/{}", n.name, p.suffix))
            })
            .collect();
        let mut worst = 0f64;
        for (t, (a, b)) in w0.iter().zip(&w1).enumerate() {
            if fixed.contains(&a.name) {
                assert_eq!(a.values, b.values, "{case}: {} changed", a.name);
                continue;
            }
            let step = (a.values.len() / 5).max(1);
            for i in (0..a.values.len()).step_by(step) {
                let analytic = f64::from(a.values[i] - b.values[i]) / f64::from(lr);
                // Layer normalization over few channels is strongly curved: the central
                // difference's second-order error is 0.6 % at a step of 1e-2 there.
                let eps = if matches!(case, "gelu" | "unet") {
                    1e-3f32
                } else {
                    1e-2
                };
                let mut w = w0.clone();
                w[t].values[i] += eps;
                let plus = loss(&mut m, &w)?;
                w[t].values[i] -= 2.0 * eps;
                let minus = loss(&mut m, &w)?;
                let numeric = (plus - minus) / (2.0 * f64::from(eps));
                let err = (numeric - analytic).abs();
                worst = worst.max(err);
                assert!(
                    err <= 2e-3 * (1.0 + numeric.abs()),
                    "{case}: {}[{i}] analytic {analytic} numeric {numeric}",
                    a.name
                );
            }
        }
        eprintln!("{case}: worst |analytic − numeric| = {worst:.2e}");
    }
    Ok(())
}

#[test]
fn layers_that_do_not_fit_their_inputs_fail_when_applied() -> R {
    let inputs = input(&[8, 8, 3])?;
    let a = Conv2D::new(4, 3).padding(Same).apply(&inputs)?;
    let b = Conv2D::new(5, 3).padding(Same).apply(&inputs)?;
    let err = Add::new().apply(&[&a, &b]).unwrap_err().to_string();
    assert!(
        err.contains("'add' (Add)")
            && err.contains("input 0 is (None, 8, 8, 4)")
            && err.contains("input 1 is (None, 8, 8, 5)"),
        "{err}"
    );
    let err = Subtract::new()
        .apply(&[&a, &a, &a])
        .unwrap_err()
        .to_string();
    assert!(err.contains("exactly 2 inputs, got 3"), "{err}");
    let c = Conv2D::new(4, 3).apply(&inputs)?;
    let err = Concatenate::new().apply(&[&a, &c]).unwrap_err().to_string();
    assert!(
        err.contains("(None, 8, 8, 4)") && err.contains("(None, 6, 6, 4)"),
        "{err}"
    );
    assert_eq!(Concatenate::new().apply(&[&a, &b])?.shape(), [8, 8, 9]);
    assert_eq!(
        Concatenate::new().axis(1).apply(&[&a, &a])?.shape(),
        [16, 8, 4]
    );
    assert!(Concatenate::new().axis(0).apply(&[&a, &a]).is_err());
    let err = Dense::new(3).apply(&a).unwrap_err().to_string();
    assert!(err.contains("Flatten"), "{err}");
    let err = Conv2D::new(4, 3)
        .input_shape(&[8, 8, 3])
        .apply(&inputs)
        .unwrap_err()
        .to_string();
    assert!(err.contains("input(&"), "{err}");
    // An output that depends on an input not given.
    let other = input(&[8, 8, 3])?;
    let d = Add::new().apply(&[&a, &Conv2D::new(4, 3).padding(Same).apply(&other)?])?;
    let d = Dense::new(2).apply(&Flatten::new().apply(&d)?)?;
    assert!(Model::new(&[&inputs], &[&d]).is_err());
    Ok(())
}

/// Off-path layers are not part of the model; a graph trains twice to the same bits.
#[test]
fn graphs_keep_only_their_paths_and_train_reproducibly() -> R {
    let m = graph_model("self")?;
    let names: Vec<&str> = m.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv2d",
            "add",
            "multiply",
            "global_average_pooling2d",
            "dense"
        ]
    );
    assert_eq!(m.count_params(), 4 * 9 * 2 + 4 + 4 * 3 + 3);
    let n = 24;
    let x = random_vec(n * SHAPE.iter().product::<usize>(), 5);
    let y = random_labels(n, 3, 6);
    let run = || -> anyhow::Result<Vec<NamedTensor>> {
        let mut m = compiled(graph_model("residual")?, gpu(), Optimizer::adam())?;
        m.fit(
            &x,
            &y,
            &FitConfig {
                epochs: 2,
                batch_size: 8,
                verbose: false,
                ..Default::default()
            },
        )?;
        m.get_weights()
    };
    assert_eq!(run()?, run()?, "two runs of one seed differ");
    Ok(())
}

/// A functional model's file round-trips (graph, names, weights, optimizer state); a
/// model file of the Sequential-only release (format 1) loads and predicts as it did.
#[test]
fn graph_files_round_trip_and_old_files_load() -> R {
    let dir = std::env::temp_dir().join(format!("wgcnn-graph-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let n = 16;
    let x = random_vec(n * SHAPE.iter().product::<usize>(), 7);
    let y = random_labels(n, 3, 8);
    for case in ["residual", "depthwise"] {
        let mut m = compiled(graph_model(case)?, gpu(), Optimizer::adam())?;
        m.train_on_batch(&x, &y)?;
        let path = dir.join(format!("{case}.safetensors"));
        m.save(&path)?;
        let mut back = Model::load(&path)?;
        assert_eq!(back.summary(), m.summary());
        assert_eq!(back.get_weights()?, m.get_weights()?);
        m.train_on_batch(&x, &y)?;
        back.train_on_batch(&x, &y)?;
        assert_eq!(
            back.get_weights()?,
            m.get_weights()?,
            "{case}: one more step differs"
        );
    }

    // Written by wgcnn 0.1 before graphs (`wgcnn train mnist-dense --limit 300 --epochs 1`):
    // its predict printed "3 13.2%, 7 12.6%, 0 12.5%" for the input picture.
    let old = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v1 = Model::load(old.join("v1-mnist-dense.safetensors"))?;
    assert_eq!(v1.epochs_trained(), 1);
    assert!(v1.summary().contains("Total params: 7,850"));
    let img =
        wgcnn::report::load_input_image(old.join("v1-mnist-dense-input.png"), [28, 28, 1], false)?;
    let p = v1.predict(&img, 1)?;
    for (class, want) in [(3, 0.132), (7, 0.126), (0, 0.125)] {
        assert!(
            (p[class] - want).abs() < 0.0006,
            "class {class}: {}",
            p[class]
        );
    }
    // Saved again, it is a format-2 file with the same weights and optimizer state.
    let again = dir.join("v1-again.safetensors");
    v1.save(&again)?;
    let mut v2 = Model::load(&again)?;
    assert_eq!(v2.get_weights()?, v1.get_weights()?);
    v1.train_on_batch(&img, &[3])?;
    v2.train_on_batch(&img, &[3])?;
    assert_eq!(v2.get_weights()?, v1.get_weights()?);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Keras 3's functional summary, character for character (the 899-parameter model of
/// keras.io's shape, printed by Keras 3.15 on this machine), and a merge of a tensor
/// with itself listed twice.
#[test]
fn functional_summary_is_keras_3s_table() -> R {
    let inputs = input(&[8, 8, 3])?;
    let a = Conv2D::new(4, 3).padding(Same).apply(&inputs)?;
    let b = Conv2D::new(4, 1).apply(&inputs)?;
    let y = Add::new().apply(&[&a, &b])?;
    let y = Flatten::new().apply(&y)?;
    let out = Dense::new(3).activation(Softmax).apply(&y)?;
    let m = Model::new(&[&inputs], &[&out])?;
    let want = "\
Model: \"functional\"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ Layer (type)                  ┃ Output Shape              ┃         Param # ┃ Connected to               ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│ input_layer (InputLayer)      │ (None, 8, 8, 3)           │               0 │ -                          │
├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤
│ conv2d (Conv2D)               │ (None, 8, 8, 4)           │             112 │ input_layer[0][0]          │
├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤
│ conv2d_1 (Conv2D)             │ (None, 8, 8, 4)           │              16 │ input_layer[0][0]          │
├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤
│ add (Add)                     │ (None, 8, 8, 4)           │               0 │ conv2d[0][0],              │
│                               │                           │                 │ conv2d_1[0][0]             │
├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤
│ flatten (Flatten)             │ (None, 256)               │               0 │ add[0][0]                  │
├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤
│ dense (Dense)                 │ (None, 3)                 │             771 │ flatten[0][0]              │
└───────────────────────────────┴───────────────────────────┴─────────────────┴────────────────────────────┘
 Total params: 899 (3.51 KB)
 Trainable params: 899 (3.51 KB)
 Non-trainable params: 0 (0.00 B)
";
    assert_eq!(m.summary(), want, "got:\n{}", m.summary());
    let c = Add::new().apply(&[&a, &a])?;
    let out = Dense::new(3).apply(&Flatten::new().apply(&c)?)?;
    let m = Model::new(&[&inputs], &[&out])?;
    assert!(
        m.summary().contains("│ conv2d[0][0], conv2d[0][0] │"),
        "{}",
        m.summary()
    );
    Ok(())
}

/// A graph model's step is still one submission that allocates nothing, and reads back
/// only the loss and metrics.
#[test]
fn a_graph_training_step_is_one_submit_and_allocates_nothing() -> R {
    // A device of its own: the shared one's counters move with every parallel test.
    let g = Arc::new(Gpu::new()?);
    let mut m = compiled(
        graph_model("residual")?,
        Device::Gpu(g.clone()),
        Optimizer::adam(),
    )?;
    let n = 32 * 10;
    let x = random_vec(n * SHAPE.iter().product::<usize>(), 5);
    let y = random_labels(n, 3, 6);
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 32,
        verbose: false,
        ..Default::default()
    };
    m.fit(&x, &y, &cfg)?; // the first epoch records the step
    let (b0, s0, r0) = g.counters.snapshot();
    m.fit(&x, &y, &cfg)?;
    let (b1, s1, r1) = g.counters.snapshot();
    assert_eq!(b1 - b0, 0, "buffers created during an epoch");
    assert_eq!(s1 - s0, 10 + (r1 - r0), "submits: 10 steps + read-backs");
    assert!(r1 - r0 <= 1, "read-backs in a quiet epoch: {}", r1 - r0);
    Ok(())
}

/// keras.io's ResNet-20 v1: Keras 3's counts and its summary, character for character
/// (tests/fixtures holds what Keras 3.15 printed for the same network).
#[test]
fn resnet20_is_keras_resnet_v1() -> R {
    let m = wgcnn::experiments::experiment("cifar-resnet20")?.model()?;
    assert_eq!(m.count_params(), 274_442);
    assert_eq!(m.count_trainable_params(), 273_066);
    let keras = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keras3-resnet20-summary.txt"),
    )?;
    assert_eq!(m.summary(), keras);
    Ok(())
}

/// Keras' initializers (spread from the fans, truncation at two standard deviations),
/// `use_bias=False` in the parameter counts, and an L2 factor that is not a number.
/// DepthwiseConv2D's output shapes and parameter counts, as Keras 3.15 reports them
/// (`compute_output_shape`, `count_params`) for each option.
#[test]
fn depthwise_conv2d_follows_keras() -> R {
    let cases: [(&[usize], DepthwiseConv2D, [usize; 3], usize); 6] = [
        (&[9, 8, 5], DepthwiseConv2D::new(3), [7, 6, 5], 50),
        (
            &[9, 8, 5],
            DepthwiseConv2D::new(3)
                .depth_multiplier(2)
                .strides(2, 2)
                .padding(Same),
            [5, 4, 10],
            100,
        ),
        (
            &[11, 10, 4],
            DepthwiseConv2D::new(3)
                .dilation_rate(2, 2)
                .padding(Same)
                .use_bias(false),
            [11, 10, 4],
            36,
        ),
        (
            &[11, 10, 4],
            DepthwiseConv2D::new(3)
                .kernel_size(2, 3)
                .dilation_rate(2, 2),
            [9, 6, 4],
            28,
        ),
        (
            &[7, 7, 6],
            DepthwiseConv2D::new(2)
                .strides(3, 3)
                .depth_multiplier(4)
                .padding(Same)
                .dilation_rate(2, 2),
            [3, 3, 24],
            120,
        ),
        (
            &[14, 14, 64],
            DepthwiseConv2D::new(3).padding(Same).use_bias(false),
            [14, 14, 64],
            576,
        ),
    ];
    for (shape, layer, out, params) in cases {
        let inputs = input(shape)?;
        let y = layer.clone().apply(&inputs)?;
        assert_eq!(y.shape(), out, "{layer:?} on {shape:?}");
        let m = Model::new(&[&inputs], &[&y])?;
        assert_eq!(m.count_params(), params, "{layer:?} on {shape:?}");
    }
    // Keras' weight names and the kernel's [kh, kw, channels, multiplier] shape.
    let inputs = input(&[6, 6, 3])?;
    let y = DepthwiseConv2D::new(3).depth_multiplier(2).apply(&inputs)?;
    let m = Model::new(&[&inputs], &[&y])?;
    let shapes: Vec<_> = m.nodes().iter().flat_map(|n| n.param_shapes()).collect();
    assert_eq!(shapes, [("kernel", vec![3, 3, 3, 2]), ("bias", vec![6])]);
    // Windows that do not fit, and zero sizes, fail when applied.
    assert!(DepthwiseConv2D::new(7).apply(&inputs).is_err());
    assert!(
        DepthwiseConv2D::new(3)
            .dilation_rate(3, 3)
            .apply(&inputs)
            .is_err()
    );
    assert!(
        DepthwiseConv2D::new(3)
            .depth_multiplier(0)
            .apply(&inputs)
            .is_err()
    );
    assert!(DepthwiseConv2D::new(3).apply(&input(&[6, 6])?).is_err());
    Ok(())
}

/// SeparableConv2D's output shapes, parameter counts and weights, as Keras 3.15 reports
/// them.
#[test]
fn separable_conv2d_follows_keras() -> R {
    let cases: [(&[usize], SeparableConv2D, [usize; 3], usize); 3] = [
        (
            &[14, 14, 16],
            SeparableConv2D::new(32, 3).strides(2, 2).padding(Same),
            [7, 7, 32],
            688,
        ),
        (
            &[9, 8, 5],
            SeparableConv2D::new(4, 3)
                .depth_multiplier(2)
                .use_bias(false),
            [7, 6, 4],
            130,
        ),
        (
            &[11, 10, 3],
            SeparableConv2D::new(6, 2).dilation_rate(2, 2).padding(Same),
            [11, 10, 6],
            36,
        ),
    ];
    for (shape, layer, out, params) in cases {
        let inputs = input(shape)?;
        let y = layer.clone().apply(&inputs)?;
        assert_eq!(y.shape(), out, "{layer:?} on {shape:?}");
        let m = Model::new(&[&inputs], &[&y])?;
        assert_eq!(m.count_params(), params, "{layer:?} on {shape:?}");
    }
    let inputs = input(&[8, 8, 16])?;
    let y = SeparableConv2D::new(32, 3).apply(&inputs)?;
    let m = Model::new(&[&inputs], &[&y])?;
    let shapes: Vec<_> = m.nodes().iter().flat_map(|n| n.param_shapes()).collect();
    assert_eq!(
        shapes,
        [
            ("depthwise_kernel", vec![3, 3, 16, 1]),
            ("pointwise_kernel", vec![1, 1, 16, 32]),
            ("bias", vec![32])
        ]
    );
    assert!(SeparableConv2D::new(0, 3).apply(&inputs).is_err());
    assert!(SeparableConv2D::new(4, 9).apply(&inputs).is_err());
    Ok(())
}

/// BatchNormalization's `center` and `scale` switches: Keras 3.15's parameter counts and
/// weight names for each combination (6 channels).
#[test]
fn batchnorm_center_and_scale_follow_keras() -> R {
    let cases: [(bool, bool, usize, &[&str]); 4] = [
        (
            true,
            true,
            24,
            &["gamma", "beta", "moving_mean", "moving_variance"],
        ),
        (
            false,
            true,
            18,
            &["gamma", "moving_mean", "moving_variance"],
        ),
        (true, false, 18, &["beta", "moving_mean", "moving_variance"]),
        (false, false, 12, &["moving_mean", "moving_variance"]),
    ];
    for (center, scale, params, names) in cases {
        let inputs = input(&[5, 5, 6])?;
        let y = BatchNormalization::new()
            .center(center)
            .scale(scale)
            .apply(&inputs)?;
        let m = Model::new(&[&inputs], &[&y])?;
        assert_eq!(m.count_params(), params, "center={center} scale={scale}");
        let got: Vec<&str> = m
            .nodes()
            .iter()
            .flat_map(|n| n.param_shapes())
            .map(|p| p.0)
            .collect();
        assert_eq!(got, names, "center={center} scale={scale}");
    }
    Ok(())
}

/// Reshape: Keras' output shapes (an inferred −1 included), its name, and the shapes it
/// refuses when applied.
#[test]
fn reshape_follows_keras() -> R {
    let inputs = input(&[12])?;
    assert_eq!(Reshape::new(&[3, -1]).apply(&inputs)?.shape(), [3, 4]);
    assert_eq!(Reshape::new(&[2, 3, 2]).apply(&inputs)?.shape(), [2, 3, 2]);
    let y = Reshape::new(&[-1]).apply(&Reshape::new(&[6, 2]).apply(&inputs)?)?;
    assert_eq!(y.shape(), [12]);
    let m = Model::new(&[&inputs], &[&y])?;
    let names: Vec<&str> = m.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["reshape", "reshape_1"]);
    for bad in [&[5, -1][..], &[3, 3], &[-1, -1], &[0, 12], &[-2, 6]] {
        assert!(Reshape::new(bad).apply(&inputs).is_err(), "{bad:?}");
    }
    Ok(())
}

/// Frozen layers (Keras' `trainable = False`): Keras 3.15's trainable and non-trainable
/// counts; on the GPU, training leaves a frozen convolution and batch normalization
/// (moving statistics included) bit for bit as they were while the rest learns; the flags
/// survive a save and load; a change after compile needs a new compile.
#[test]
fn frozen_layers_follow_keras() -> R {
    let build = || -> anyhow::Result<Model> {
        let inputs = input(&[9, 8, 2])?;
        let a = Conv2D::new(8, 3).apply(&inputs)?;
        let b = BatchNormalization::new().apply(&a)?;
        let c = GlobalAveragePooling2D::new().apply(&b)?;
        let outputs = Dense::new(3).activation(Softmax).apply(&c)?;
        let mut m = Model::new(&[&inputs], &[&outputs])?;
        m.set_trainable("conv2d", false)?
            .set_trainable("batch_normalization", false)?;
        Ok(m)
    };
    let mut m = build()?;
    assert_eq!((m.count_trainable_params(), m.count_params()), (27, 211));
    assert!(m.summary().contains("Non-trainable params: 184"));
    assert!(m.set_trainable("nope", false).is_err());
    assert!(m.set_trainable("input_layer", false).is_err());
    let mut m = compiled(m, gpu(), Optimizer::adam())?;
    let x = random_vec(24 * 144, 5);
    let y = random_labels(24, 3, 6);
    let before = m.get_weights()?;
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 8,
        verbose: false,
        ..Default::default()
    };
    m.fit(&x, &y, &cfg)?;
    for (a, b) in before.iter().zip(&m.get_weights()?) {
        let frozen = a.name.starts_with("conv2d/") || a.name.starts_with("batch_normalization/");
        assert_eq!(a.values == b.values, frozen, "{}", a.name);
    }
    let path =
        std::env::temp_dir().join(format!("wgcnn-frozen-{}.safetensors", std::process::id()));
    m.save(&path)?;
    let loaded = Model::load(&path)?;
    std::fs::remove_file(&path)?;
    let flags: Vec<bool> = loaded.nodes().iter().map(|n| n.trainable).collect();
    assert_eq!(flags, [false, false, true, true]);
    // Unfreezing a compiled model uncompiles it (weights kept) until compiled again.
    let trained = m.get_weights()?;
    m.set_trainable("conv2d", true)?;
    assert!(m.fit(&x, &y, &cfg).is_err());
    m.compile(
        Optimizer::adam(),
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
    )?;
    assert_eq!(m.count_trainable_params(), 27 + 152);
    assert_eq!(m.get_weights()?[0].values, trained[0].values);
    m.fit(&x, &y, &cfg)?;
    assert_ne!(m.get_weights()?[0].values, trained[0].values);
    Ok(())
}

/// Grouped Conv2D: Keras 3.15's kernel shapes, parameter counts and values (input
/// `sin(0.7·i)` as (1, 5, 4, 8), kernel `0.5·cos(0.3·i)`, bias `0.1·f`; checksum
/// Σ y[i]·sin(0.1·i) of Keras' output), and its refusals.
#[test]
fn conv2d_groups_follow_keras() -> R {
    let cases = [
        (
            2,
            4,
            (3, 3),
            Same,
            1,
            [3, 3, 4, 4],
            148,
            -1.034_273_934_951_244_2,
        ),
        (
            4,
            8,
            (3, 2),
            Valid,
            1,
            [3, 2, 2, 8],
            104,
            -3.262_027_486_351_492,
        ),
        (
            8,
            8,
            (3, 3),
            Same,
            2,
            [3, 3, 1, 8],
            80,
            10.064_108_931_272_663,
        ),
    ];
    let x: Vec<f32> = (0..160).map(|i| (0.7 * i as f32).sin()).collect();
    for (groups, filters, kernel, padding, dilation, kernel_shape, params, checksum) in cases {
        let inputs = input(&[5, 4, 8])?;
        let y = Conv2D::new(filters, 0)
            .kernel_size(kernel.0, kernel.1)
            .groups(groups)
            .padding(padding)
            .dilation_rate(dilation, dilation)
            .apply(&inputs)?;
        let m = Model::new(&[&inputs], &[&y])?;
        let node = m.nodes().last().expect("the layer");
        assert_eq!((node.name.as_str(), node.keras_type), ("conv2d", "Conv2D"));
        assert_eq!(node.param_shapes()[0].1, kernel_shape);
        assert_eq!(node.param_count(), params);
        let s = node
            .op
            .depthwise_shape(1)
            .expect("grouped convolutions run depthwise");
        let w: Vec<f32> = (0..s.weight_len())
            .map(|i| 0.5 * (0.3 * i as f32).cos())
            .collect();
        let b: Vec<f32> = (0..filters).map(|f| 0.1 * f as f32).collect();
        let mut out = vec![0.0; s.output_len()];
        depthwise_conv2d_forward_cpu(&mut out, &x, &w, &b, &s, false);
        let sum: f64 = out
            .iter()
            .enumerate()
            .map(|(i, &v)| f64::from(v) * (0.1 * i as f64).sin())
            .sum();
        assert!(
            (sum - checksum).abs() < 1e-4,
            "groups {groups}: {sum} against Keras' {checksum}"
        );
    }
    let inputs = input(&[5, 4, 6])?;
    assert!(Conv2D::new(4, 3).groups(4).apply(&inputs).is_err());
    assert!(Conv2D::new(5, 3).groups(3).apply(&inputs).is_err());
    // Keras accepts these; the grouped kernels need channels in multiples of 4.
    let err = Conv2D::new(6, 3).groups(3).apply(&inputs).unwrap_err();
    assert!(format!("{err:#}").contains("multiples of 4"), "{err:#}");
    Ok(())
}

/// Dilated Conv2D: Keras 3.15's output shapes, and its refusal of strides with dilation.
#[test]
fn conv2d_dilation_follows_keras() -> R {
    let inputs = input(&[9, 8, 2])?;
    let valid = Conv2D::new(4, 3).dilation_rate(2, 2).apply(&inputs)?;
    assert_eq!(valid.shape(), [5, 4, 4]);
    let same = Conv2D::new(4, 3)
        .kernel_size(3, 2)
        .dilation_rate(2, 3)
        .padding(Same)
        .apply(&inputs)?;
    assert_eq!(same.shape(), [9, 8, 4]);
    assert!(
        Conv2D::new(4, 3)
            .dilation_rate(5, 1)
            .apply(&inputs)
            .is_err()
    );
    let strided = Conv2D::new(4, 3).dilation_rate(2, 2).strides(2, 2);
    assert!(strided.apply(&inputs).is_err());
    Ok(())
}

/// Conv2DTranspose: Keras 3.15's output shapes, parameter counts and values. Input
/// `sin(0..12)` as (1, 3, 2, 2), kernel `0.5·cos(0..)` in Keras' layout, bias (0.1, −0.2,
/// 0.3); each case's checksum is Σ y[i]·sin(0.1·i) over Keras' output.
#[test]
fn conv2d_transpose_follows_keras() -> R {
    let cases = [
        (
            (3, 3),
            (2, 2),
            Same,
            [6, 4, 3],
            57,
            0.190_053_540_874_504_66,
        ),
        ((4, 3), (2, 3), Same, [6, 6, 3], 75, 0.539_996_922_511_217_9),
        (
            (3, 3),
            (2, 2),
            Valid,
            [7, 5, 3],
            57,
            0.822_981_901_714_408_1,
        ),
        (
            (2, 2),
            (3, 2),
            Valid,
            [9, 4, 3],
            27,
            0.330_240_741_921_334_24,
        ),
    ];
    let x: Vec<f32> = (0..12).map(|i| (i as f32).sin()).collect();
    for (kernel, strides, padding, shape, params, checksum) in cases {
        let inputs = input(&[3, 2, 2])?;
        let y = Conv2DTranspose::new(3, 0)
            .kernel_size(kernel.0, kernel.1)
            .strides(strides.0, strides.1)
            .padding(padding)
            .apply(&inputs)?;
        assert_eq!(y.shape(), shape);
        let m = Model::new(&[&inputs], &[&y])?;
        let node = m.nodes().last().expect("the layer");
        assert_eq!(node.name, "conv2d_transpose");
        assert_eq!(node.param_count(), params);
        let s = node.op.conv_transpose_shape(1).expect("a transposed conv");
        let w: Vec<f32> = (0..s.weight_len())
            .map(|i| 0.5 * (i as f32).cos())
            .collect();
        let mut out = vec![0.0; s.output_len()];
        let b = [0.1, -0.2, 0.3];
        conv2d_transpose_forward_cpu(&mut out, &x, &w, Some(&b), &s);
        let sum: f64 = out
            .iter()
            .enumerate()
            .map(|(i, &v)| f64::from(v) * (0.1 * i as f64).sin())
            .sum();
        assert!(
            (sum - checksum).abs() < 1e-5,
            "{kernel:?} {strides:?} {padding:?}: {sum} against Keras' {checksum}"
        );
    }
    Ok(())
}

/// LayerNormalization: Keras 3.15's values (x = 3·sin(1.3·i) + 1 over (2, 3, 4), gamma
/// 1 + 0.1·c, beta 0.05·c), parameters and names.
#[test]
fn layernorm_follows_keras() -> R {
    let keras = [
        -0.321_854, 1.420_415, 0.720_225, -1.723_082, -1.550_061, 0.136_075, 1.587_332, 0.452_078,
        -1.007_965, -0.965_419, 0.820_507, 1.879_846, 0.521_631, -1.277_508, -0.699_485, 1.906_861,
        1.544_518, 0.109_869, -1.348_484, -0.359_438, 0.906_852, 1.140_541, -0.507_483, -1.659_622,
    ];
    let inputs = input(&[2, 3, 4])?;
    let y = LayerNormalization::new().apply(&inputs)?;
    let m = Model::new(&[&inputs], &[&y])?;
    let node = m.nodes().last().expect("the layer");
    assert_eq!(node.name, "layer_normalization");
    assert_eq!(node.param_shapes(), [("gamma", vec![4]), ("beta", vec![4])]);
    let s = node.op.layernorm_shape(24).expect("a layer norm");
    let x: Vec<f32> = (0..24)
        .map(|i| 3.0 * (1.3 * i as f32).sin() + 1.0)
        .collect();
    let gamma: Vec<f32> = (0..4).map(|c| 1.0 + 0.1 * c as f32).collect();
    let beta: Vec<f32> = (0..4).map(|c| 0.05 * c as f32).collect();
    let (mut out, mut saved) = (vec![0.0; 24], vec![0.0; s.saved_len()]);
    wgcnn::ops::layernorm::layernorm_forward_cpu(&mut out, &mut saved, &x, &gamma, &beta, &s);
    assert_close("layer normalization", &out, &keras, 2e-6, 1e-5)?;
    let big = input(&[5, 7, 3])?;
    let counts: Vec<usize> = [(true, true), (false, true), (true, false), (false, false)]
        .into_iter()
        .map(|(center, scale)| -> anyhow::Result<usize> {
            let y = LayerNormalization::new()
                .center(center)
                .scale(scale)
                .apply(&big)?;
            let m = Model::new(&[&big], &[&y])?;
            Ok(m.nodes().last().expect("the layer").param_count())
        })
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(counts, [6, 3, 3, 0]);
    Ok(())
}

/// ZeroPadding2D, Cropping2D and UpSampling2D: Keras 3.15's output shapes for each
/// argument form, its names, its up-sampled values (`UpSampling2D((3, 2), ...)` of
/// `arange(12).reshape(1, 2, 3, 2)**1.5 / 7`, channel 1), and refusals.
#[test]
#[allow(clippy::excessive_precision)] // Keras' values as printed
fn reshaping_layers_follow_keras() -> R {
    let inputs = input(&[5, 7, 3])?;
    let pad = ZeroPadding2D::new(0).sides([[1, 2], [3, 0]]);
    assert_eq!(pad.apply(&inputs)?.shape(), [8, 10, 3]);
    let crop = Cropping2D::new(0).sides([[1, 2], [3, 0]]);
    assert_eq!(crop.apply(&inputs)?.shape(), [2, 4, 3]);
    assert_eq!(ZeroPadding2D::new(2).apply(&inputs)?.shape(), [9, 11, 3]);
    assert_eq!(
        Cropping2D::new(0).symmetric(1, 2).apply(&inputs)?.shape(),
        [3, 3, 3]
    );
    assert!(Cropping2D::new(0).symmetric(3, 0).apply(&inputs).is_err());
    assert!(UpSampling2D::new(0).apply(&inputs).is_err());
    assert!(ZeroPadding2D::new(1).apply(&input(&[4])?).is_err());
    let x: Vec<f32> = (0..12).map(|v| (v as f32).powf(1.5) / 7.0).collect();
    // Rows 0–2 and rows 3–5.
    let keras_nearest = [
        [
            0.142_857_1,
            0.142_857_1,
            0.742_307_5,
            0.742_307_5,
            1.597_191_5,
            1.597_191_5,
        ],
        [
            2.645_751_5,
            2.645_751_5,
            3.857_142_9,
            3.857_142_9,
            5.211_839,
            5.211_839,
        ],
    ];
    let keras_bilinear = [
        [
            0.142_857_1,
            0.292_719_7,
            0.592_444_9,
            0.956_028_5,
            1.383_470_4,
            1.597_191_5,
        ],
        [
            0.142_857_1,
            0.292_719_7,
            0.592_444_9,
            0.956_028_5,
            1.383_470_4,
            1.597_191_5,
        ],
        [
            0.977_155_3,
            1.178_013_1,
            1.579_728_5,
            2.035_958_1,
            2.546_702,
            2.802_074,
        ],
        [
            1.811_453_5,
            2.063_306_3,
            2.567_012,
            3.115_887_6,
            3.709_933_5,
            4.006_956_6,
        ],
        [
            2.645_751_5,
            2.948_599_3,
            3.554_295,
            4.195_817,
            4.873_165,
            5.211_839,
        ],
        [
            2.645_751_5,
            2.948_599_3,
            3.554_295,
            4.195_817,
            4.873_165,
            5.211_839,
        ],
    ];
    let small = input(&[2, 3, 2])?;
    for interpolation in [Nearest, Bilinear] {
        let y = UpSampling2D::new(0)
            .size(3, 2)
            .interpolation(interpolation)
            .apply(&small)?;
        assert_eq!(y.shape(), [6, 6, 2]);
        let m = Model::new(&[&small], &[&y])?;
        let node = m.nodes().last().expect("the layer");
        assert_eq!(node.name, "up_sampling2d");
        let s = node.op.upsampling_shape(1).expect("an up-sampling op");
        let mut out = vec![0.0; s.output_len()];
        wgcnn::ops::upsampling2d::upsampling2d_forward_cpu(&mut out, &x, &s);
        let channel1: Vec<f32> = out.iter().skip(1).step_by(2).copied().collect();
        let want: Vec<f32> = match interpolation {
            Nearest => (0..6).flat_map(|r| keras_nearest[r / 3]).collect(),
            Bilinear => keras_bilinear.iter().flatten().copied().collect(),
        };
        assert_close(&format!("{interpolation:?}"), &channel1, &want, 1e-6, 1e-6)?;
    }
    Ok(())
}

/// The activations' values at a few points, as Keras 3.15 computes them
/// (`keras.activations.get(name)(x)`, `keras.layers.ReLU(6, 0.1, 1)(x)`), and Keras'
/// layer names.
#[test]
fn activations_follow_keras() -> R {
    let x = [-4.0f32, -1.0, -0.5, 0.0, 0.5, 2.0, 7.0];
    let keras: [(&str, [f32; 7]); 11] = [
        ("relu6", [0.0, 0.0, 0.0, 0.0, 0.5, 2.0, 6.0]),
        ("leaky_relu", [-0.8, -0.2, -0.1, 0.0, 0.5, 2.0, 7.0]),
        (
            "elu",
            [
                -0.981_684_4,
                -0.632_120_55,
                -0.393_469_33,
                0.0,
                0.5,
                2.0,
                7.0,
            ],
        ),
        (
            "softplus",
            [
                0.018_149_93,
                0.313_261_7,
                0.474_077,
                std::f32::consts::LN_2,
                0.974_077,
                2.126_928,
                7.000_911,
            ],
        ),
        (
            "softsign",
            [
                -0.8,
                -0.5,
                -0.333_333_34,
                0.0,
                0.333_333_34,
                0.666_666_7,
                0.875,
            ],
        ),
        (
            "hard_sigmoid",
            [
                0.0,
                0.333_333_34,
                0.416_666_7,
                0.5,
                0.583_333_4,
                0.833_333_4,
                1.0,
            ],
        ),
        (
            "gelu",
            [
                -0.000_126_685_03,
                -0.158_655_27,
                -0.154_268_77,
                0.0,
                0.345_731_23,
                1.954_499_7,
                7.0,
            ],
        ),
        (
            "gelu_approximate",
            [
                -7.009_506e-5,
                -0.158_807_96,
                -0.154_286,
                0.0,
                0.345_714,
                1.954_597_7,
                7.0,
            ],
        ),
        (
            "silu",
            [
                -0.071_944_84,
                -0.268_941_43,
                -0.188_770_34,
                0.0,
                0.311_229_68,
                1.761_594,
                6.993_623,
            ],
        ),
        (
            "hard_silu",
            [
                0.0,
                -0.333_333_34,
                -0.208_333_34,
                0.0,
                0.291_666_7,
                1.666_666_7,
                7.0,
            ],
        ),
        (
            "ReLU(6, 0.1, 1)",
            [-0.5, -0.2, -0.15, -0.1, -0.05, 2.0, 6.0],
        ),
    ];
    for (name, want) in keras {
        let inputs = input(&[7])?;
        let y = match name {
            "relu6" => Activation::new(Relu6).apply(&inputs)?,
            "leaky_relu" => Activation::new(LeakyRelu).apply(&inputs)?,
            "elu" => Activation::new(Elu).apply(&inputs)?,
            "softplus" => Activation::new(Softplus).apply(&inputs)?,
            "softsign" => Activation::new(Softsign).apply(&inputs)?,
            "hard_sigmoid" => Activation::new(HardSigmoid).apply(&inputs)?,
            "gelu" => Activation::new(Gelu).apply(&inputs)?,
            "gelu_approximate" => Activation::new(GeluApproximate).apply(&inputs)?,
            "silu" => Activation::new(Swish).apply(&inputs)?,
            "hard_silu" => Activation::new(HardSwish).apply(&inputs)?,
            _ => ReLU::new()
                .max_value(6.0)
                .negative_slope(0.1)
                .threshold(1.0)
                .apply(&inputs)?,
        };
        // The layer's activation, as both engines run it (ops tests hold the GPU kernels
        // to this CPU formula, graph tests the engines to each other).
        let m = Model::new(&[&inputs], &[&y])?;
        let act = m.nodes().last().expect("the layer").act;
        let out: Vec<f32> = x.iter().map(|&v| act.apply(v)).collect();
        assert_close(name, &out, &want, 1e-6, 1e-5)?;
    }
    let names: Vec<String> = {
        let inputs = input(&[3])?;
        let a = ReLU::new().apply(&inputs)?;
        let b = LeakyReLU::new().apply(&a)?;
        let c = ELU::new().apply(&b)?;
        let m = Model::new(&[&inputs], &[&c])?;
        m.nodes().iter().map(|n| n.name.clone()).collect()
    };
    assert_eq!(names, ["re_lu", "leaky_re_lu", "elu"]);
    // Keras refuses negative parameters; so does wgcnn, when the layer is applied.
    let inputs = input(&[3])?;
    assert!(ReLU::new().negative_slope(-0.1).apply(&inputs).is_err());
    assert!(ReLU::new().max_value(-1.0).apply(&inputs).is_err());
    assert!(
        LeakyReLU::new()
            .negative_slope(-0.3)
            .apply(&inputs)
            .is_err()
    );
    assert!(ELU::new().alpha(0.0).apply(&inputs).is_err());
    Ok(())
}

#[test]
fn kernel_options_follow_keras() -> R {
    let spread = |init: Initializer| -> anyhow::Result<(f64, f32)> {
        let inputs = input(&[8, 8, 64])?;
        let y = Conv2D::new(64, 3).kernel_initializer(init).apply(&inputs)?;
        let out = Dense::new(2).apply(&Flatten::new().apply(&y)?)?;
        let mut m = compiled(
            Model::new(&[&inputs], &[&out])?,
            Device::Cpu,
            Optimizer::adam(),
        )?;
        let w = m.get_weights()?.remove(0).values;
        let sd = (w.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        let max = w.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let _ = m.predict(&vec![0.5; 8 * 8 * 64], 1)?;
        Ok((sd, max))
    };
    let fan_in: f64 = 3.0 * 3.0 * 64.0;
    for (init, want, bound) in [
        (
            Initializer::HeNormal,
            (2.0 / fan_in).sqrt(),
            2.0 * (2.0 / fan_in).sqrt() / 0.8796,
        ),
        (
            Initializer::LecunNormal,
            (1.0 / fan_in).sqrt(),
            2.0 * (1.0 / fan_in).sqrt() / 0.8796,
        ),
        (
            Initializer::HeUniform,
            (2.0 / fan_in).sqrt(),
            (6.0 / fan_in).sqrt(),
        ),
        (
            Initializer::GlorotUniform,
            (1.0 / fan_in).sqrt(),
            (3.0 / fan_in).sqrt(),
        ),
    ] {
        let (sd, max) = spread(init)?;
        assert!(
            (sd / want - 1.0).abs() < 0.02,
            "{init:?}: spread {sd}, want {want}"
        );
        assert!(
            f64::from(max) <= bound * 1.0001,
            "{init:?}: {max} past {bound}"
        );
    }
    let inputs = input(&[4, 4, 3])?;
    let c = Conv2D::new(4, 3).use_bias(false).apply(&inputs)?;
    let d = Dense::new(5)
        .use_bias(false)
        .apply(&Flatten::new().apply(&c)?)?;
    let m = Model::new(&[&inputs], &[&d])?;
    assert_eq!(m.count_params(), 108 + 4 * 4 * 5);
    let names: Vec<String> = m
        .nodes()
        .iter()
        .flat_map(|n| n.param_shapes())
        .map(|p| p.0.into())
        .collect();
    assert_eq!(names, ["kernel", "kernel"]);
    assert!(
        Conv2D::new(4, 3)
            .kernel_regularizer(l2(f32::NAN))
            .apply(&inputs)
            .is_err()
    );
    Ok(())
}

/// Gradient buffers are reused by liveness: a residual graph's step needs fewer gradient
/// bytes than one buffer per tensor, and trains to the same bits either way.
#[test]
fn gradient_buffers_are_reused_and_change_nothing() -> R {
    let n = 32;
    let x = random_vec(n * SHAPE.iter().product::<usize>(), 9);
    let y = random_labels(n, 3, 10);
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 16,
        verbose: false,
        ..Default::default()
    };
    let mut weights = Vec::new();
    for reuse in [true, false] {
        let mut m = compiled(graph_model("residual")?, gpu(), Optimizer::adam())?;
        m.set_gradient_reuse(reuse)?;
        let mem = m.step_memory(16)?.expect("a GPU model");
        eprintln!("reuse {reuse}: {mem:?}");
        if reuse {
            assert!(
                mem.gradients < mem.gradients_one_per_tensor,
                "no gradient buffer was reused: {mem:?}"
            );
        } else {
            assert_eq!(mem.gradients, mem.gradients_one_per_tensor);
        }
        m.fit(&x, &y, &cfg)?;
        weights.push(m.get_weights()?);
    }
    assert_eq!(
        weights[0], weights[1],
        "reusing buffers changed the results"
    );
    Ok(())
}

/// A graph whose every node is on a path to the output: a node nothing reads (say, from a
/// crafted model file) is an error, not a gradient buffer nothing writes.
#[test]
fn nodes_off_the_path_to_the_output_are_refused() -> R {
    let mut g = wgcnn::model::Graph::default();
    let i = g.push(Input::new(&[4]).into(), vec![], None)?;
    let d = g.push(Dense::new(3).into(), vec![i], None)?;
    let out = g.push(Dense::new(2).activation(Softmax).into(), vec![d], None)?;
    g.push(Dense::new(5).into(), vec![d], None)?; // read by nothing, not the output
    g.outputs = vec![out];
    let err = g.validate().unwrap_err().to_string();
    assert!(err.contains("dense_2") && err.contains("path"), "{err}");
    Ok(())
}

/// A small convolutional autoencoder: image in, image out (sigmoid), as the value-target
/// losses train it.
fn autoencoder(out_act: ActivationFn) -> anyhow::Result<Model> {
    let inputs = input(&[6, 6, 1])?;
    let e = Conv2D::new(4, 3)
        .padding(Same)
        .activation(Tanh)
        .apply(&inputs)?;
    let d = MaxPooling2D::new(2).apply(&e)?;
    let u = UpSampling2D::new(2).apply(&d)?;
    let y = Concatenate::new().apply(&[&u, &e])?;
    let out = Conv2D::new(1, 3)
        .padding(Same)
        .activation(out_act)
        .apply(&y)?;
    Model::new(&[&inputs], &[&out])
}

/// Value targets through every element-wise loss: GPU training equals the CPU
/// reference's (a partial last batch included), evaluate and predict agree, a model file
/// keeps its loss, and the CPU gradients match finite differences of the loss.
#[test]
fn value_targets_train_like_the_cpu_reference() -> R {
    let n = 20; // batch 8: 8, 8 and a partial 4
    let x: Vec<f32> = random_vec(n * 36, 7).iter().map(|v| v.abs()).collect();
    // Denoising-style targets in [0, 1] (binary for the accuracy metric).
    let target: Vec<f32> = x.iter().map(|v| f32::from(*v > 0.5)).collect();
    let cases = [
        (Loss::binary_crossentropy(), Sigmoid, vec![Metric::Accuracy]),
        (
            Loss::BinaryCrossentropy {
                from_logits: true,
                label_smoothing: 0.1,
            },
            Linear,
            vec![],
        ),
        (
            Loss::MeanSquaredError,
            Sigmoid,
            vec![Metric::MeanAbsoluteError],
        ),
        (
            Loss::MeanAbsoluteError,
            Linear,
            vec![Metric::MeanSquaredError],
        ),
        (Loss::huber(), Linear, vec![]),
    ];
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 8,
        verbose: false,
        ..Default::default()
    };
    for (loss, act, metrics) in cases {
        let build = |device: Device| -> anyhow::Result<Model> {
            let mut m = autoencoder(act)?;
            m.set_device(device).set_seed(3);
            m.compile(Optimizer::adam().learning_rate(0.01), loss, &metrics)?;
            Ok(m)
        };
        let mut c = build(Device::Cpu)?;
        let mut g = build(gpu())?;
        let hc = c.fit(&x, &target, &cfg)?;
        let hg = g.fit(&x, &target, &cfg)?;
        let what = format!("{loss:?}");
        for (gw, cw) in g.get_weights()?.iter().zip(&c.get_weights()?) {
            assert_close(
                &format!("{what} {}", gw.name),
                &gw.values,
                &cw.values,
                1e-4,
                1e-3,
            )?;
        }
        assert_close(&format!("{what} loss"), &hg.loss, &hc.loss, 1e-4, 1e-3)?;
        assert_close(
            &format!("{what} metric"),
            &hg.accuracy,
            &hc.accuracy,
            1e-4,
            1e-3,
        )?;
        assert!(
            hg.loss[1] < hg.loss[0],
            "{what}: the loss falls: {:?}",
            hg.loss
        );
        let expected_metric = match (loss, metrics.first()) {
            (Loss::BinaryCrossentropy { .. }, _) => "binary_accuracy",
            (_, Some(Metric::MeanSquaredError)) => "mse",
            _ => "mae",
        };
        assert_eq!(hg.metric_name(), expected_metric);
        let (lg, mg) = g.evaluate(&x, &target)?;
        let (lc, mc) = c.evaluate(&x, &target)?;
        assert_close(
            &format!("{what} evaluate"),
            &[lg, mg],
            &[lc, mc],
            1e-5,
            1e-4,
        )?;
        let pg = g.predict(&x, 8)?;
        assert_eq!(pg.len(), n * 36);
        assert_close(
            &format!("{what} predict"),
            &pg,
            &c.predict(&x, 8)?,
            1e-5,
            1e-4,
        )?;
        // Class labels for a value loss, or values of the wrong size, are errors.
        assert!(g.fit(&x, &vec![0u32; n], &cfg).is_err());
        assert!(g.evaluate(&x, &target[..target.len() - 1]).is_err());
        // The loss travels with the model file.
        let path = std::env::temp_dir().join(format!(
            "wgcnn-values-{}-{}.safetensors",
            std::process::id(),
            expected_metric
        ));
        g.save(&path)?;
        let mut loaded = Model::load(&path)?;
        std::fs::remove_file(&path)?;
        let (ll, ml) = loaded.evaluate(&x, &target)?;
        assert_close(&format!("{what} loaded"), &[ll, ml], &[lg, mg], 1e-6, 1e-5)?;
    }
    // A class loss refuses value targets; accuracy needs class labels or binary
    // cross-entropy.
    let mut m = graph_model("concatenate")?;
    m.compile(
        Optimizer::adam(),
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
    )?;
    let xs = random_vec(2 * SHAPE.iter().product::<usize>(), 1);
    assert!(m.evaluate(&xs, &vec![0.5f32; 6]).is_err());
    let mut m = autoencoder(Linear)?;
    assert!(
        m.compile(
            Optimizer::adam(),
            Loss::MeanSquaredError,
            &[Metric::Accuracy]
        )
        .is_err()
    );
    // Softmax is not element-wise.
    let mut m = graph_model("concatenate")?;
    assert!(
        m.compile(Optimizer::adam(), Loss::MeanSquaredError, &[])
            .is_err()
    );
    Ok(())
}

/// The CPU reference's gradients through an element-wise loss, recovered from one SGD step,
/// against central differences of the loss.
#[test]
fn value_loss_gradients_match_finite_differences() -> R {
    let n = 3;
    let x: Vec<f32> = random_vec(n * 36, 8).iter().map(|v| v.abs()).collect();
    let target: Vec<f32> = random_vec(n * 36, 9).iter().map(|v| v.abs()).collect();
    for (loss, act) in [
        (Loss::binary_crossentropy(), Sigmoid),
        (Loss::MeanSquaredError, Tanh),
    ] {
        let mut m = autoencoder(act)?;
        m.set_device(Device::Cpu).set_seed(4);
        m.compile(Optimizer::sgd(1.0), loss, &[])?;
        let w0 = m.get_weights()?;
        m.train_on_batch(&x, &target)?;
        let w1 = m.get_weights()?;
        for (t, (a, b)) in w0.iter().zip(&w1).enumerate() {
            for i in (0..a.values.len()).step_by((a.values.len() / 4).max(1)) {
                let analytic = f64::from(a.values[i] - b.values[i]);
                let eps = 1e-3f32;
                let mut w = w0.clone();
                w[t].values[i] += eps;
                m.set_weights(&w)?;
                let plus = f64::from(m.evaluate_batched(&x, &target, n)?.0);
                w[t].values[i] -= 2.0 * eps;
                m.set_weights(&w)?;
                let minus = f64::from(m.evaluate_batched(&x, &target, n)?.0);
                let numeric = (plus - minus) / (2.0 * f64::from(eps));
                assert!(
                    (numeric - analytic).abs() <= 2e-3 * (1.0 + numeric.abs()),
                    "{loss:?} {}[{i}]: analytic {analytic} numeric {numeric}",
                    a.name
                );
            }
        }
    }
    Ok(())
}

/// The mnist-unet example's denoising U-Net (examples/mnist_unet.rs): Keras 3's 56,929
/// parameters and its output shape, trained one step on value targets.
#[test]
fn mnist_unet_is_keras_sized() -> R {
    let mut m = wgcnn::experiments::denoising_unet(&[28, 28, 1])?;
    assert_eq!(m.count_params(), 56_929);
    assert_eq!(m.nodes().last().expect("the output").out_shape, [28, 28, 1]);
    m.set_device(gpu());
    m.compile(Optimizer::adam(), Loss::binary_crossentropy(), &[])?;
    let x: Vec<f32> = random_vec(4 * 784, 3).iter().map(|v| v.abs()).collect();
    let (loss, _) = m.train_on_batch(&x, &x)?;
    assert!(loss.is_finite() && loss > 0.0);
    Ok(())
}

/// Per-pixel class labels (segmentation masks): a (H, W, classes) softmax output with a
/// label per pixel trains on the GPU like the CPU reference; evaluate is Keras' mean over
/// every pixel and sample (checked against predict's probabilities); partial batches; the
/// CPU gradients match finite differences.
#[test]
fn per_pixel_labels_train_like_the_cpu_reference() -> R {
    let (h, w, classes) = (8, 7, 3);
    let build = |device: Device, softmax: bool, lr: f32| -> anyhow::Result<Model> {
        let inputs = input(&[h, w, 2])?;
        let a = Conv2D::new(4, 3)
            .padding(Same)
            .activation(Tanh)
            .apply(&inputs)?;
        let out = Conv2D::new(classes, 1)
            .activation(if softmax { Softmax } else { Linear })
            .apply(&a)?;
        let mut m = Model::new(&[&inputs], &[&out])?;
        m.set_device(device).set_seed(5);
        let opt = Optimizer::sgd(lr).momentum(0.5);
        m.compile(
            opt,
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
        )?;
        Ok(m)
    };
    let n = 10; // batch 4: 4, 4 and 2
    let x = random_vec(n * h * w * 2, 11);
    let y = random_labels(n * h * w, classes, 12);
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 4,
        verbose: false,
        ..Default::default()
    };
    for softmax in [true, false] {
        let mut c = build(Device::Cpu, softmax, 0.5)?;
        let mut g = build(gpu(), softmax, 0.5)?;
        let hc = c.fit(&x, &y, &cfg)?;
        let hg = g.fit(&x, &y, &cfg)?;
        for (gw, cw) in g.get_weights()?.iter().zip(&c.get_weights()?) {
            assert_close(&gw.name, &gw.values, &cw.values, 1e-4, 1e-3)?;
        }
        assert_close("per-pixel loss", &hg.loss, &hc.loss, 1e-4, 1e-3)?;
        assert_close("per-pixel accuracy", &hg.accuracy, &hc.accuracy, 1e-4, 1e-3)?;
        // Keras' reduction: the mean over every pixel of every sample.
        let (loss, acc) = g.evaluate(&x, &y)?;
        let out = g.predict(&x, 4)?;
        assert_eq!(out.len(), n * h * w * classes);
        let (mut want_loss, mut hits) = (0f64, 0usize);
        for (p, &label) in out.chunks(classes).zip(&y) {
            let probs: Vec<f64> = if softmax {
                p.iter().map(|&v| f64::from(v)).collect()
            } else {
                let mx = p.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let e: Vec<f64> = p.iter().map(|&v| f64::from(v - mx).exp()).collect();
                let s: f64 = e.iter().sum();
                e.iter().map(|v| v / s).collect()
            };
            want_loss -= probs[label as usize].ln();
            let best = (0..classes).fold(0, |b, j| if probs[j] > probs[b] { j } else { b });
            hits += usize::from(best == label as usize);
        }
        let pixels = (n * h * w) as f64;
        assert_close(
            "per-pixel evaluate",
            &[loss, acc],
            &[(want_loss / pixels) as f32, (hits as f64 / pixels) as f32],
            1e-5,
            1e-4,
        )?;
        // One label per sample is an error now.
        assert!(g.evaluate(&x, &y[..n]).is_err());
    }
    // Finite differences of the CPU reference's gradients (one SGD step, lr 1).
    let mut m = build(Device::Cpu, true, 1.0)?;
    m.compile(
        Optimizer::sgd(1.0),
        Loss::SparseCategoricalCrossentropy,
        &[],
    )?;
    let (xs, ys) = (&x[..3 * h * w * 2], &y[..3 * h * w]);
    let w0 = m.get_weights()?;
    m.train_on_batch(xs, ys)?;
    let w1 = m.get_weights()?;
    for (t, (a, b)) in w0.iter().zip(&w1).enumerate() {
        for i in (0..a.values.len()).step_by((a.values.len() / 4).max(1)) {
            let analytic = f64::from(a.values[i] - b.values[i]);
            let eps = 1e-2f32;
            let mut w = w0.clone();
            w[t].values[i] += eps;
            m.set_weights(&w)?;
            let plus = f64::from(m.evaluate_batched(xs, ys, 3)?.0);
            w[t].values[i] -= 2.0 * eps;
            m.set_weights(&w)?;
            let minus = f64::from(m.evaluate_batched(xs, ys, 3)?.0);
            let numeric = (plus - minus) / (2.0 * f64::from(eps));
            assert!(
                (numeric - analytic).abs() <= 2e-3 * (1.0 + numeric.abs()),
                "{}[{i}]: analytic {analytic} numeric {numeric}",
                a.name
            );
        }
    }
    Ok(())
}

/// Categorical cross-entropy on one-hot targets trains exactly as sparse labels do (1-D
/// and per-pixel outputs, softmax or logits); with label smoothing the GPU follows the
/// CPU reference.
#[test]
fn one_hot_targets_train_like_sparse_labels() -> R {
    let (h, w, classes) = (5, 4, 3);
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 4,
        verbose: false,
        ..Default::default()
    };
    for (spatial, softmax) in [(false, true), (true, true), (true, false)] {
        let build = |device: Device, loss: Loss| -> anyhow::Result<Model> {
            let inputs = input(&[h, w, 2])?;
            let a = Conv2D::new(4, 3)
                .padding(Same)
                .activation(Tanh)
                .apply(&inputs)?;
            let act = if softmax { Softmax } else { Linear };
            let out = if spatial {
                Conv2D::new(classes, 1).activation(act).apply(&a)?
            } else {
                let g = GlobalAveragePooling2D::new().apply(&a)?;
                Dense::new(classes).activation(act).apply(&g)?
            };
            let mut m = Model::new(&[&inputs], &[&out])?;
            m.set_device(device).set_seed(6);
            m.compile(Optimizer::sgd(0.5), loss, &[Metric::Accuracy])?;
            Ok(m)
        };
        let n = 10;
        let per = if spatial { h * w } else { 1 };
        let x = random_vec(n * h * w * 2, 13);
        let y = random_labels(n * per, classes, 14);
        let onehot: Vec<f32> = y
            .iter()
            .flat_map(|&l| (0..classes).map(move |c| f32::from(u8::from(c == l as usize))))
            .collect();
        let cce = |label_smoothing| Loss::CategoricalCrossentropy {
            from_logits: !softmax,
            label_smoothing,
        };
        let mut sparse = build(gpu(), Loss::SparseCategoricalCrossentropy)?;
        let mut dense = build(gpu(), cce(0.0))?;
        let hs = sparse.fit(&x, &y, &cfg)?;
        let hd = dense.fit(&x, &onehot, &cfg)?;
        let what = format!("spatial {spatial}, softmax {softmax}");
        assert_close(&format!("{what}: loss"), &hd.loss, &hs.loss, 1e-5, 1e-4)?;
        assert_close(
            &format!("{what}: accuracy"),
            &hd.accuracy,
            &hs.accuracy,
            0.0,
            0.0,
        )?;
        for (a, b) in dense.get_weights()?.iter().zip(&sparse.get_weights()?) {
            assert_close(
                &format!("{what}: {}", a.name),
                &a.values,
                &b.values,
                1e-5,
                1e-4,
            )?;
        }
        let mut c = build(Device::Cpu, cce(0.1))?;
        let mut g = build(gpu(), cce(0.1))?;
        let hc = c.fit(&x, &onehot, &cfg)?;
        let hg = g.fit(&x, &onehot, &cfg)?;
        assert_close(
            &format!("{what}: smoothed loss"),
            &hg.loss,
            &hc.loss,
            1e-4,
            1e-3,
        )?;
        assert_eq!(g.predict(&x, 4)?.len(), n * per * classes);
    }
    // A softmax output with from_logits (or a linear one without) is refused.
    let inputs = input(&[4])?;
    let out = Dense::new(3).activation(Softmax).apply(&inputs)?;
    let mut m = Model::new(&[&inputs], &[&out])?;
    let logits = Loss::CategoricalCrossentropy {
        from_logits: true,
        label_smoothing: 0.0,
    };
    assert!(m.compile(Optimizer::adam(), logits, &[]).is_err());
    Ok(())
}

/// Top-k accuracy through a model: evaluate's metric is the share of samples whose label
/// is beaten by fewer than k classes in predict's probabilities, on GPU and CPU.
#[test]
fn top_k_accuracy_follows_predict() -> R {
    let n = 13;
    let x = random_vec(n * SHAPE.iter().product::<usize>(), 21);
    let y = random_labels(n, 3, 22);
    for device in [gpu(), Device::Cpu] {
        let mut m = graph_model("concatenate")?;
        m.set_device(device).set_seed(2);
        let top2 = Metric::SparseTopKCategoricalAccuracy { k: 2 };
        m.compile(
            Optimizer::adam(),
            Loss::SparseCategoricalCrossentropy,
            &[top2],
        )?;
        let cfg = FitConfig {
            epochs: 1,
            batch_size: 4,
            verbose: false,
            ..Default::default()
        };
        let h = m.fit(&x, &y, &cfg)?;
        assert_eq!(h.metric_name(), "sparse_top_k_categorical_accuracy");
        let (_, acc) = m.evaluate(&x, &y)?;
        let p = m.predict(&x, 4)?;
        let hits = p
            .chunks(3)
            .zip(&y)
            .filter(|(row, l)| row.iter().filter(|&&v| v > row[**l as usize]).count() < 2)
            .count();
        assert_close(
            "top-2 accuracy",
            &[acc],
            &[hits as f32 / n as f32],
            1e-6,
            0.0,
        )?;
    }
    Ok(())
}

/// MeanIoU over a per-pixel classifier: the GPU's epoch metric equals the CPU
/// reference's, and evaluate's equals the IoU of predict's argmax against the labels.
#[test]
fn mean_iou_follows_predict() -> R {
    let (h, w, classes) = (6, 5, 3);
    let n = 7;
    let x = random_vec(n * h * w * 2, 31);
    let y = random_labels(n * h * w, classes, 32);
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 3,
        verbose: false,
        ..Default::default()
    };
    let mut results = Vec::new();
    for device in [gpu(), Device::Cpu] {
        let inputs = input(&[h, w, 2])?;
        let a = Conv2D::new(4, 3)
            .padding(Same)
            .activation(Tanh)
            .apply(&inputs)?;
        let out = Conv2D::new(classes, 1).activation(Softmax).apply(&a)?;
        let mut m = Model::new(&[&inputs], &[&out])?;
        m.set_device(device).set_seed(8);
        let iou = Metric::MeanIoU { num_classes: 3 };
        m.compile(
            Optimizer::sgd(0.5),
            Loss::SparseCategoricalCrossentropy,
            &[iou],
        )?;
        let hist = m.fit(&x, &y, &cfg)?;
        assert_eq!(hist.metric_name(), "mean_io_u");
        let (_, miou) = m.evaluate(&x, &y)?;
        let p = m.predict(&x, 3)?;
        let mut counts = vec![0u64; classes * classes];
        wgcnn::ops::softmax_xent::confusion_cpu(&mut counts, &p, &y, classes, y.len());
        let want = wgcnn::ops::softmax_xent::mean_iou(&counts, classes) as f32;
        assert_close("MeanIoU", &[miou], &[want], 1e-6, 1e-5)?;
        results.push(hist.accuracy);
        let bad = Metric::MeanIoU { num_classes: 4 };
        assert!(
            m.compile(
                Optimizer::sgd(0.5),
                Loss::SparseCategoricalCrossentropy,
                &[bad]
            )
            .is_err()
        );
    }
    assert_close("MeanIoU per epoch", &results[0], &results[1], 1e-5, 1e-4)?;
    Ok(())
}
