//! GPU kernels against their CPU references: random data, odd shapes, outputs poisoned
//! with NaN first so that an unwritten element fails. GEMM-based kernels run on every
//! kernel family the adapter can run (its own, plus the others forced).

use std::sync::{Arc, OnceLock};
use wgcnn::Tensor;
use wgcnn::gpu::{Dispatch, Gpu, Kernel, Uniform, Variant};
use wgcnn::ops::Padding;
use wgcnn::ops::activation::*;
use wgcnn::ops::batchnorm::*;
use wgcnn::ops::bias::*;
use wgcnn::ops::concat::*;
use wgcnn::ops::conv2d::*;
use wgcnn::ops::conv2d_transpose::*;
use wgcnn::ops::depthwise_conv2d::*;
use wgcnn::ops::dropout::*;
use wgcnn::ops::l2::*;
use wgcnn::ops::layernorm::*;
use wgcnn::ops::loss::*;
use wgcnn::ops::matmul::*;
use wgcnn::ops::merge::*;
use wgcnn::ops::optimizer::{Clip, LearningRate, Optimizer};
use wgcnn::ops::pad2d::*;
use wgcnn::ops::pool2d::*;
use wgcnn::ops::softmax_xent::*;
use wgcnn::ops::upsampling2d::*;
use wgcnn::testing::{assert_close, every_activation, poison, random_labels, random_vec};

type R = anyhow::Result<()>;

fn gpu() -> Arc<Gpu> {
    Gpu::shared().expect("a GPU adapter (lavapipe in CI) is required")
}

/// The default device plus devices forced onto every GEMM family the adapter can run:
/// portable always, tiled, subgroup and texture where its limits and features allow
/// (lavapipe runs them all), and a texture device whose textures hold one row, so that
/// operands past 4,096 texels take the storage-buffer fallback. The forced devices send
/// even the smallest matmuls to the GEMM cores; the default one sends them to the
/// small-matmul kernel.
fn gpus() -> Vec<Arc<Gpu>> {
    static OTHERS: OnceLock<Vec<Arc<Gpu>>> = OnceLock::new();
    let main = gpu();
    let others = OTHERS.get_or_init(|| {
        let mut others: Vec<Arc<Gpu>> = [
            Variant::Portable,
            Variant::Tiled,
            Variant::Subgroup,
            Variant::Texture,
        ]
        .into_iter()
        .filter_map(|v| match Gpu::with_variant(Some(v)) {
            Ok(mut g) => {
                g.small_gemm_macs = 0;
                Some(Arc::new(g))
            }
            Err(e) if v != Variant::Portable => {
                eprintln!("not testing the {v:?} family here: {e:#}");
                None
            }
            Err(e) => panic!("a portable device: {e:#}"),
        })
        .collect();
        if let Ok(mut g) = Gpu::with_variant(Some(Variant::Texture)) {
            g.max_texture_rows = 1;
            g.small_gemm_macs = 0;
            others.push(Arc::new(g));
        }
        others
    });
    std::iter::once(main)
        .chain(others.iter().cloned())
        .collect()
}

/// Names a device in assertion messages: its family, and a lowered texture size.
fn family(g: &Gpu) -> String {
    let small = if g.small_gemm_macs > 0 {
        ", small matmuls on matmul_small"
    } else {
        ""
    };
    if g.max_texture_rows == 1 {
        format!("{:?} (1-row textures{small})", g.variant)
    } else {
        format!("{:?}{small}", g.variant)
    }
}

fn poisoned(g: &Gpu, shape: &[usize], name: &str) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_slice(g, shape, &poison(n), name).unwrap()
}

fn run(g: &Gpu, d: &Dispatch) -> Vec<f32> {
    g.run(&[d]).unwrap();
    Vec::new()
}

fn conv_shapes() -> Vec<Conv2dShape> {
    let c = |batch, in_h, in_w, in_c, out_c, k_h, k_w, stride_h, stride_w, padding| Conv2dShape {
        batch,
        in_h,
        in_w,
        in_c,
        out_c,
        k_h,
        k_w,
        stride_h,
        stride_w,
        dilation_h: 1,
        dilation_w: 1,
        padding,
    };
    let mut shapes = vec![
        c(1, 5, 7, 1, 3, 3, 3, 1, 1, Padding::Valid),
        c(2, 9, 8, 3, 64, 5, 5, 2, 2, Padding::Same),
        c(3, 7, 7, 64, 5, 1, 1, 1, 1, Padding::Valid),
        c(2, 7, 10, 3, 9, 3, 2, 2, 1, Padding::Same),
        c(2, 6, 6, 2, 4, 3, 3, 2, 2, Padding::Same),
        c(1, 11, 5, 4, 70, 3, 3, 1, 1, Padding::Same),
        c(2, 8, 9, 5, 6, 4, 2, 3, 2, Padding::Valid),
        // channel counts divisible by 4 take the vec4 paths
        c(2, 9, 7, 8, 12, 3, 3, 2, 2, Padding::Same),
        c(2, 6, 5, 16, 8, 3, 3, 1, 1, Padding::Valid),
        c(1, 5, 6, 4, 4, 2, 3, 1, 2, Padding::Same),
        // long K = B·OH·OW: dW splits K over workgroups (both dW layouts, aligned or not)
        c(4, 28, 28, 1, 8, 3, 3, 1, 1, Padding::Valid),
        c(3, 17, 19, 3, 12, 3, 3, 1, 1, Padding::Same),
        c(3, 12, 12, 8, 8, 3, 3, 1, 1, Padding::Same),
        // ResNet's 1×1 stride-2 projection: 3 of the input gradient's 4 phases have no tap
        c(2, 7, 6, 8, 4, 1, 1, 2, 2, Padding::Same),
        // a phase without pixels (one input row, stride 2)
        c(1, 1, 5, 4, 8, 1, 3, 2, 2, Padding::Valid),
        // a stride past the kernel: input pixels no window reads get a zero gradient
        c(2, 10, 11, 8, 4, 2, 2, 3, 3, Padding::Valid),
    ];
    // Dilated kernels: unequal rates, 'same' and 'valid', aligned channels or not.
    let dilated = |s: Conv2dShape, dilation_h, dilation_w| Conv2dShape {
        dilation_h,
        dilation_w,
        ..s
    };
    shapes.extend([
        dilated(c(2, 9, 11, 3, 5, 3, 3, 1, 1, Padding::Same), 2, 3),
        dilated(c(2, 10, 9, 8, 12, 3, 2, 1, 1, Padding::Valid), 3, 2),
        dilated(c(1, 7, 8, 4, 8, 2, 3, 1, 1, Padding::Same), 4, 1),
        // strided and dilated together (Keras' layers refuse it; the op takes it): taps
        // gcd(stride, rate) apart reach each phase of the input gradient
        dilated(c(2, 11, 10, 4, 8, 3, 3, 2, 2, Padding::Same), 2, 3),
        dilated(c(1, 13, 9, 8, 4, 3, 2, 3, 2, Padding::Valid), 2, 4),
    ]);
    shapes
}

#[test]
fn conv2d_forward_matches_cpu() -> R {
    for g in gpus() {
        for (i, s) in conv_shapes().iter().enumerate() {
            for relu in [false, true] {
                let x = random_vec(s.input_len(), 1 + i as u64);
                let w = random_vec(s.weight_len(), 100 + i as u64);
                let b = random_vec(s.out_c, 200 + i as u64);
                let (tx, tw, tb) = (
                    Tensor::from_slice(&g, &[s.input_len()], &x, "x")?,
                    Tensor::from_slice(&g, &[s.weight_len()], &w, "w")?,
                    Tensor::from_slice(&g, &[s.out_c], &b, "b")?,
                );
                let out = poisoned(&g, &[s.output_len()], "out");
                run(&g, &conv2d_forward(&g, &out, &tx, &tw, &tb, s, relu)?);
                let mut want = vec![0.0; s.output_len()];
                conv2d_forward_cpu(&mut want, &x, &w, &b, s, relu);
                assert_close(
                    &format!("conv2d forward {s:?} relu={relu} {}", family(&g)),
                    &out.read(&g)?,
                    &want,
                    1e-4,
                    1e-3,
                )?;
            }
        }
    }
    Ok(())
}

#[test]
fn conv2d_backward_matches_cpu() -> R {
    for g in gpus() {
        for (i, s) in conv_shapes().iter().enumerate() {
            let x = random_vec(s.input_len(), 10 + i as u64);
            let w = random_vec(s.weight_len(), 110 + i as u64);
            let dy = random_vec(s.output_len(), 210 + i as u64);
            let tx = Tensor::from_slice(&g, &[s.input_len()], &x, "x")?;
            let tw = Tensor::from_slice(&g, &[s.weight_len()], &w, "w")?;
            let tdy = Tensor::from_slice(&g, &[s.output_len()], &dy, "dy")?;
            let dx = poisoned(&g, &[s.input_len()], "dx");
            let dw = poisoned(&g, &[s.weight_len()], "dw");
            let db = poisoned(&g, &[s.out_c], "db");
            let rows = s.batch * s.out_h() * s.out_w();
            g.run(&[
                &conv2d_backward_input(&g, &dx, &tdy, &tw, s, false)?,
                &conv2d_backward_weight(&g, &dw, &tdy, &tx, s, false)?,
                &bias_backward(&g, &db, &tdy, rows, s.out_c, false)?,
            ])?;
            let (mut wdx, mut wdw, mut wdb) =
                (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; s.out_c]);
            conv2d_backward_cpu(Some(&mut wdx), &mut wdw, &mut wdb, &dy, &x, &w, s);
            let tag = format!("{s:?} {}", family(&g));
            assert_close(&format!("conv2d dX {tag}"), &dx.read(&g)?, &wdx, 1e-4, 1e-3)?;
            assert_close(&format!("conv2d dW {tag}"), &dw.read(&g)?, &wdw, 1e-3, 1e-3)?;
            assert_close(&format!("conv2d db {tag}"), &db.read(&g)?, &wdb, 1e-3, 1e-3)?;
        }
    }
    Ok(())
}

/// Gradients added to what the buffers hold, on every kernel family: a first layer's
/// channels (3, padded to 4 for the GEMM, its gradients added back), aligned ones (8 and
/// 16), dW split over K, a 1×1 stride-2 projection (input-gradient phases without taps)
/// and a stride past the kernel.
#[test]
fn conv2d_backward_accumulates() -> R {
    let shapes = conv_shapes();
    let picked = [3, 7, 8, 10, 12, 13, 15].map(|i| shapes[i]);
    assert_eq!((picked[5].k_h, picked[5].stride_h), (1, 2));
    assert_eq!((picked[6].k_h, picked[6].stride_h), (2, 3));
    for (g, s) in gpus()
        .into_iter()
        .flat_map(|g| picked.map(|s| (g.clone(), s)))
    {
        let (x, w, dy) = (
            random_vec(s.input_len(), 1),
            random_vec(s.weight_len(), 2),
            random_vec(s.output_len(), 3),
        );
        let prior_dx = random_vec(s.input_len(), 4);
        let prior_dw = random_vec(s.weight_len(), 5);
        let tx = Tensor::from_slice(&g, &[x.len()], &x, "x")?;
        let tw = Tensor::from_slice(&g, &[w.len()], &w, "w")?;
        let tdy = Tensor::from_slice(&g, &[dy.len()], &dy, "dy")?;
        let dx = Tensor::from_slice(&g, &[x.len()], &prior_dx, "dx")?;
        let dw = Tensor::from_slice(&g, &[w.len()], &prior_dw, "dw")?;
        g.run(&[
            &conv2d_backward_input(&g, &dx, &tdy, &tw, &s, true)?,
            &conv2d_backward_weight(&g, &dw, &tdy, &tx, &s, true)?,
        ])?;
        let (mut wdx, mut wdw, mut wdb) = (prior_dx, prior_dw, vec![0.0; s.out_c]);
        conv2d_backward_cpu(Some(&mut wdx), &mut wdw, &mut wdb, &dy, &x, &w, &s);
        assert_close(
            &format!("conv2d dX accumulate {s:?} {}", family(&g)),
            &dx.read(&g)?,
            &wdx,
            1e-4,
            1e-3,
        )?;
        assert_close(
            &format!("conv2d dW accumulate {s:?} {}", family(&g)),
            &dw.read(&g)?,
            &wdw,
            1e-3,
            1e-3,
        )?;
    }
    Ok(())
}

/// Depthwise shapes: channels in multiples of 4 and not (padded), depth multipliers,
/// strides, dilations, both paddings, non-square kernels, a long kernel-gradient sum.
fn depthwise_shapes() -> Vec<DepthwiseShape> {
    let d = |batch, in_h, in_w, in_c, mult, k_h, k_w, stride, dil, padding| DepthwiseShape {
        batch,
        in_h,
        in_w,
        in_c,
        mult,
        group_in: 1,
        k_h,
        k_w,
        stride_h: stride,
        stride_w: stride,
        dilation_h: dil,
        dilation_w: dil,
        padding,
    };
    let mut shapes = vec![
        d(2, 9, 7, 8, 1, 3, 3, 1, 1, Padding::Same),
        d(1, 5, 6, 3, 1, 3, 3, 1, 1, Padding::Valid),
        d(2, 9, 8, 5, 2, 3, 2, 2, 1, Padding::Same),
        d(3, 11, 10, 4, 3, 3, 3, 1, 2, Padding::Same),
        d(1, 12, 9, 16, 1, 5, 5, 2, 1, Padding::Valid),
        d(2, 7, 7, 6, 4, 2, 3, 3, 2, Padding::Same),
        d(8, 15, 15, 12, 1, 3, 3, 1, 1, Padding::Same),
    ];
    // Grouped convolutions (Conv2D groups): channels per group and per-group outputs,
    // strides and dilations, a long kernel-gradient sum.
    let grouped = |s: DepthwiseShape, group_in| DepthwiseShape { group_in, ..s };
    shapes.extend([
        grouped(d(2, 9, 7, 8, 4, 3, 3, 1, 1, Padding::Same), 2),
        grouped(d(1, 7, 6, 12, 2, 3, 2, 2, 1, Padding::Valid), 3),
        grouped(d(2, 8, 9, 16, 8, 3, 3, 1, 2, Padding::Same), 8),
        grouped(d(3, 5, 5, 4, 4, 1, 1, 1, 1, Padding::Valid), 4),
        grouped(d(8, 12, 12, 8, 2, 3, 3, 1, 1, Padding::Same), 4),
    ]);
    shapes
}

/// DepthwiseConv2D against its CPU reference: forward (with and without relu), input,
/// kernel and bias gradients, on outputs poisoned with NaN; then the accumulating forms.
#[test]
fn depthwise_conv2d_matches_cpu() -> R {
    for g in gpus() {
        depthwise_conv2d_on(&g)?;
    }
    Ok(())
}

/// One device's depthwise checks (operands from textures on the texture family, from
/// buffers on the others and past the texture size).
fn depthwise_conv2d_on(g: &Gpu) -> R {
    let fam = family(g);
    for (i, s) in depthwise_shapes().iter().enumerate() {
        let seed = 100 + 10 * i as u64;
        let (x, w, b, dy) = (
            random_vec(s.input_len(), seed),
            random_vec(s.weight_len(), seed + 1),
            random_vec(s.out_c(), seed + 2),
            random_vec(s.output_len(), seed + 3),
        );
        let t = |v: &[f32], what| Tensor::from_slice(g, &[v.len()], v, what).unwrap();
        let (tx, tw, tb, tdy) = (t(&x, "x"), t(&w, "w"), t(&b, "b"), t(&dy, "dy"));
        for relu in [false, true] {
            let y = poisoned(g, &[s.output_len()], "y");
            g.run(&[&depthwise_conv2d_forward(g, &y, &tx, &tw, &tb, s, relu)?])?;
            let mut want = vec![0.0; s.output_len()];
            depthwise_conv2d_forward_cpu(&mut want, &x, &w, &b, s, relu);
            assert_close(
                &format!("depthwise forward {s:?} relu={relu} {fam}"),
                &y.read(g)?,
                &want,
                1e-5,
                1e-4,
            )?;
        }
        let (dx, dw, db) = (
            poisoned(g, &[s.input_len()], "dx"),
            poisoned(g, &[s.weight_len()], "dw"),
            poisoned(g, &[s.out_c()], "db"),
        );
        let out_pixels = s.batch * s.out_h() * s.out_w();
        g.run(&[
            &depthwise_conv2d_backward_input(g, &dx, &tdy, &tw, s, false)?,
            &depthwise_conv2d_backward_weight(g, &dw, &tdy, &tx, s, false)?,
            &bias_backward(g, &db, &tdy, out_pixels, s.out_c(), false)?,
        ])?;
        let (mut wdx, mut wdw, mut wdb) =
            (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
        depthwise_conv2d_backward_cpu(Some(&mut wdx), &mut wdw, &mut wdb, &dy, &x, &w, s);
        assert_close(
            &format!("depthwise dX {s:?} {fam}"),
            &dx.read(g)?,
            &wdx,
            1e-5,
            1e-4,
        )?;
        assert_close(
            &format!("depthwise dW {s:?} {fam}"),
            &dw.read(g)?,
            &wdw,
            1e-4,
            1e-4,
        )?;
        assert_close(
            &format!("depthwise db {s:?} {fam}"),
            &db.read(g)?,
            &wdb,
            1e-4,
            1e-4,
        )?;
        // Accumulating: the gradients add to what the buffers hold.
        let (px, pw) = (random_vec(x.len(), seed + 4), random_vec(w.len(), seed + 5));
        let (ax, aw) = (t(&px, "dx prior"), t(&pw, "dw prior"));
        g.run(&[
            &depthwise_conv2d_backward_input(g, &ax, &tdy, &tw, s, true)?,
            &depthwise_conv2d_backward_weight(g, &aw, &tdy, &tx, s, true)?,
        ])?;
        let (mut wax, mut waw, mut unused) = (px, pw, vec![0.0; b.len()]);
        depthwise_conv2d_backward_cpu(Some(&mut wax), &mut waw, &mut unused, &dy, &x, &w, s);
        assert_close(
            &format!("depthwise dX accumulate {s:?}"),
            &ax.read(g)?,
            &wax,
            1e-5,
            1e-4,
        )?;
        assert_close(
            &format!("depthwise dW accumulate {s:?}"),
            &aw.read(g)?,
            &waw,
            1e-4,
            1e-4,
        )?;
    }
    // A kernel larger than the input with 'valid' padding is an error, not a dispatch.
    let mut bad = depthwise_shapes()[1];
    bad.k_h = 9;
    let z = |n: usize| Tensor::zeros(g, &[n.max(1)], "z").unwrap();
    assert!(
        depthwise_conv2d_forward(g, &z(bad.input_len()), &z(1), &z(1), &z(1), &bad, false).is_err()
    );
    Ok(())
}

/// Every (m, n, k) below with all 32 combinations of transposes, bias, relu, accumulate.
fn matmul_shapes() -> Vec<MatmulShape> {
    let sizes = [
        (1, 1, 1),
        (7, 10, 13),
        (33, 65, 31),
        (70, 5, 129),
        (128, 130, 67),
        // N ≤ 16 with K % 4 == 0: the narrow-output core (long K: split over K)
        (33, 10, 64),
        (70, 16, 36),
        (9, 3, 1024),
        // operands past 4,096 texels: the 1-row texture device reads their buffers
        (130, 129, 200),
    ];
    let mut shapes = Vec::new();
    for (m, n, k) in sizes {
        for flags in 0..32u32 {
            shapes.push(MatmulShape {
                m,
                n,
                k,
                trans_a: flags & 1 != 0,
                trans_b: flags & 2 != 0,
                bias: flags & 4 != 0,
                relu: flags & 8 != 0,
                accumulate: flags & 16 != 0,
            });
        }
    }
    shapes
}

/// The shapes above reach every form of every GEMM kernel on the devices under test
/// (aligned, unaligned, narrow; buffers and textures), so each is checked against the CPU.
#[test]
fn test_shapes_reach_every_gemm_kernel_form() -> R {
    let mut seen = std::collections::HashSet::new();
    let mut families = std::collections::HashSet::new();
    let mut fallbacks = 0;
    for g in gpus() {
        families.insert(g.variant);
        let one_row = g.max_texture_rows == 1;
        let mut add = |d: &Dispatch| {
            for l in d.links() {
                seen.insert((l.kernel, l.variant));
                if one_row && l.kernel.is_gemm() && !l.variant.uses_textures() {
                    fallbacks += 1;
                }
            }
        };
        for s in conv_shapes() {
            let t = |n: usize| Tensor::zeros(&g, &[n], "t").unwrap();
            let (x, w, b, y) = (
                t(s.input_len()),
                t(s.weight_len()),
                t(s.out_c),
                t(s.output_len()),
            );
            add(&conv2d_forward(&g, &y, &x, &w, &b, &s, false)?);
            add(&conv2d_backward_input(&g, &x, &y, &w, &s, false)?);
            add(&conv2d_backward_weight(&g, &w, &y, &x, &s, false)?);
        }
        for s in matmul_shapes() {
            let t = |n: usize| Tensor::zeros(&g, &[n], "t").unwrap();
            let (a, b, bias, c) = (t(s.m * s.k), t(s.k * s.n), t(s.n), t(s.m * s.n));
            add(&matmul(&g, &c, &a, &b, s.bias.then_some(&bias), &s)?);
        }
    }
    let mut missing = Vec::new();
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_gemm()) {
        for &v in kernel.variants() {
            let family_tested = match v {
                Variant::SubgroupAligned | Variant::SubgroupNarrow => {
                    families.contains(&Variant::Subgroup) || families.contains(&Variant::Texture)
                }
                Variant::TextureAligned | Variant::TextureAlignedB => {
                    families.contains(&Variant::Texture)
                }
                other => families.contains(&other),
            };
            if family_tested && !seen.contains(&(kernel, v)) {
                missing.push(format!("{}:{v:?}", kernel.name()));
            }
        }
    }
    if !seen.contains(&(Kernel::MatmulSmall, Variant::Portable)) {
        missing.push("matmul_small".into());
    }
    assert!(
        missing.is_empty(),
        "never reached by the test shapes: {missing:?}"
    );
    if families.contains(&Variant::Texture) {
        assert!(
            fallbacks > 0,
            "no shape took the storage-buffer fallback of the texture family"
        );
    }
    Ok(())
}

#[test]
fn matmul_all_transposes_match_cpu() -> R {
    for g in gpus() {
        for (i, s) in matmul_shapes().into_iter().enumerate() {
            let MatmulShape { m, n, k, .. } = s;
            {
                let seed = 7 * i as u64;
                let a = random_vec(m * k, seed);
                let b = random_vec(k * n, seed + 1);
                let bias = random_vec(n, seed + 2);
                let c0 = if s.accumulate {
                    random_vec(m * n, seed + 3)
                } else {
                    poison(m * n)
                };
                let (ta, tb, tbias) = (
                    Tensor::from_slice(&g, &[a.len()], &a, "a")?,
                    Tensor::from_slice(&g, &[b.len()], &b, "b")?,
                    Tensor::from_slice(&g, &[n], &bias, "bias")?,
                );
                let tc = Tensor::from_slice(&g, &[m * n], &c0, "c")?;
                run(
                    &g,
                    &matmul(&g, &tc, &ta, &tb, s.bias.then_some(&tbias), &s)?,
                );
                let mut want = c0.clone();
                matmul_cpu(&mut want, &a, &b, s.bias.then_some(&bias[..]), &s);
                assert_close(
                    &format!("matmul {s:?} {}", family(&g)),
                    &tc.read(&g)?,
                    &want,
                    1e-4,
                    1e-3,
                )?;
            }
        }
    }
    Ok(())
}

#[test]
fn dense_backward_via_matmul_matches_cpu() -> R {
    let g = gpu();
    let (batch, n_in, n_out) = (13, 37, 10);
    let (x, w, dy) = (
        random_vec(batch * n_in, 1),
        random_vec(n_in * n_out, 2),
        random_vec(batch * n_out, 3),
    );
    let tx = Tensor::from_slice(&g, &[batch, n_in], &x, "x")?;
    let tw = Tensor::from_slice(&g, &[n_in, n_out], &w, "w")?;
    let tdy = Tensor::from_slice(&g, &[batch, n_out], &dy, "dy")?;
    let (dx, dw, db) = (
        poisoned(&g, &[batch, n_in], "dx"),
        poisoned(&g, &[n_in, n_out], "dw"),
        poisoned(&g, &[n_out], "db"),
    );
    let sdx = MatmulShape {
        m: batch,
        n: n_in,
        k: n_out,
        trans_b: true,
        ..Default::default()
    };
    let sdw = MatmulShape {
        m: n_in,
        n: n_out,
        k: batch,
        trans_a: true,
        ..Default::default()
    };
    g.run(&[
        &matmul(&g, &dx, &tdy, &tw, None, &sdx)?,
        &matmul(&g, &dw, &tx, &tdy, None, &sdw)?,
        &bias_backward(&g, &db, &tdy, batch, n_out, false)?,
    ])?;
    let (mut wdx, mut wdw, mut wdb) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; n_out]);
    dense_backward_cpu(
        Some(&mut wdx),
        &mut wdw,
        &mut wdb,
        &dy,
        &x,
        &w,
        batch,
        n_in,
        n_out,
    );
    assert_close("dense dX", &dx.read(&g)?, &wdx, 1e-4, 1e-3)?;
    assert_close("dense dW", &dw.read(&g)?, &wdw, 1e-4, 1e-3)?;
    assert_close("dense db", &db.read(&g)?, &wdb, 1e-4, 1e-3)?;
    Ok(())
}

fn pool_shapes() -> Vec<Pool2dShape> {
    let p = |batch, in_h, in_w, c, pool_h, pool_w, stride_h, stride_w, padding| Pool2dShape {
        batch,
        in_h,
        in_w,
        c,
        pool_h,
        pool_w,
        stride_h,
        stride_w,
        padding,
    };
    vec![
        p(2, 26, 26, 64, 2, 2, 2, 2, Padding::Valid),
        p(1, 7, 9, 3, 2, 2, 2, 2, Padding::Valid),
        p(3, 7, 9, 5, 2, 2, 2, 2, Padding::Same),
        p(2, 8, 7, 1, 3, 3, 2, 2, Padding::Same),
        p(1, 10, 11, 4, 3, 2, 1, 2, Padding::Valid),
        p(2, 5, 5, 2, 3, 3, 1, 1, Padding::Same),
        // windows that tile the input (the scatter kernel), odd sizes and 'same' padding
        p(2, 9, 11, 8, 3, 3, 3, 3, Padding::Valid),
        p(1, 8, 11, 4, 3, 2, 3, 2, Padding::Same),
        p(2, 11, 13, 3, 2, 3, 2, 3, Padding::Same),
    ]
}

#[test]
fn maxpool_matches_cpu() -> R {
    let g = gpu();
    for (i, s) in pool_shapes().iter().enumerate() {
        let x = random_vec(s.input_len(), 40 + i as u64);
        let dy = random_vec(s.output_len(), 50 + i as u64);
        let tx = Tensor::from_slice(&g, &[x.len()], &x, "x")?;
        let tdy = Tensor::from_slice(&g, &[dy.len()], &dy, "dy")?;
        let y = poisoned(&g, &[s.output_len()], "y");
        let arg = Tensor::from_slice(
            &g,
            &[s.output_len()],
            &vec![u32::MAX - 1; s.output_len()],
            "argmax",
        )?;
        let dx = poisoned(&g, &[s.input_len()], "dx");
        g.run(&[
            &maxpool2d_forward(&g, &y, &arg, &tx, s)?,
            &maxpool2d_backward(&g, &dx, &tdy, &arg, s, false)?,
        ])?;
        let (mut wy, mut warg, mut wdx) = (
            vec![0.0; s.output_len()],
            vec![0u32; s.output_len()],
            vec![0.0; s.input_len()],
        );
        maxpool2d_forward_cpu(&mut wy, &mut warg, &x, s);
        maxpool2d_backward_cpu(&mut wdx, &dy, &warg, s);
        assert_close(
            &format!("maxpool forward {s:?}"),
            &y.read(&g)?,
            &wy,
            0.0,
            0.0,
        )?;
        assert_eq!(arg.read::<u32>(&g)?, warg, "maxpool argmax {s:?}");
        assert_close(
            &format!("maxpool backward {s:?}"),
            &dx.read(&g)?,
            &wdx,
            1e-6,
            1e-5,
        )?;
        // Accumulating into a gradient that already holds values.
        let prior = random_vec(s.input_len(), 60 + i as u64);
        let dx = Tensor::from_slice(&g, &[prior.len()], &prior, "dx")?;
        g.run(&[&maxpool2d_backward(&g, &dx, &tdy, &arg, s, true)?])?;
        let want: Vec<f32> = prior.iter().zip(&wdx).map(|(a, b)| a + b).collect();
        assert_close(
            &format!("maxpool backward, accumulating {s:?}"),
            &dx.read(&g)?,
            &want,
            1e-6,
            1e-5,
        )?;
        // Fused with the backward of a relu before the pooling (input = relu output).
        let xr: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
        let txr = Tensor::from_slice(&g, &[xr.len()], &xr, "relu(x)")?;
        let dx = poisoned(&g, &[s.input_len()], "dx");
        g.run(&[
            &maxpool2d_forward(&g, &y, &arg, &txr, s)?,
            &maxpool2d_relu_backward(&g, &dx, &tdy, &arg, &y, s, false)?,
        ])?;
        let mut wdx = vec![0.0; s.input_len()];
        maxpool2d_forward_cpu(&mut wy, &mut warg, &xr, s);
        maxpool2d_backward_cpu(&mut wdx, &dy, &warg, s);
        let want: Vec<f32> = wdx
            .iter()
            .zip(&xr)
            .map(|(d, v)| if *v > 0.0 { *d } else { 0.0 })
            .collect();
        assert_close(
            &format!("maxpool backward fused with relu {s:?}"),
            &dx.read(&g)?,
            &want,
            1e-6,
            1e-5,
        )?;
    }
    Ok(())
}

#[test]
fn avgpool_matches_cpu() -> R {
    let g = gpu();
    for (i, s) in pool_shapes().iter().enumerate() {
        let x = random_vec(s.input_len(), 60 + i as u64);
        let dy = random_vec(s.output_len(), 70 + i as u64);
        let tx = Tensor::from_slice(&g, &[x.len()], &x, "x")?;
        let tdy = Tensor::from_slice(&g, &[dy.len()], &dy, "dy")?;
        let (y, dx) = (
            poisoned(&g, &[s.output_len()], "y"),
            poisoned(&g, &[s.input_len()], "dx"),
        );
        g.run(&[
            &avgpool2d_forward(&g, &y, &tx, s)?,
            &avgpool2d_backward(&g, &dx, &tdy, s, false)?,
        ])?;
        let (mut wy, mut wdx) = (vec![0.0; s.output_len()], vec![0.0; s.input_len()]);
        avgpool2d_forward_cpu(&mut wy, &x, s);
        avgpool2d_backward_cpu(&mut wdx, &dy, s);
        assert_close(
            &format!("avgpool forward {s:?}"),
            &y.read(&g)?,
            &wy,
            1e-6,
            1e-5,
        )?;
        assert_close(
            &format!("avgpool backward {s:?}"),
            &dx.read(&g)?,
            &wdx,
            1e-6,
            1e-5,
        )?;
    }
    Ok(())
}

/// GlobalAveragePooling2D's windows (one per image): whole-vec4 channel counts take
/// global_avgpool2d.wgsl (both directions, and adding onto a gradient), others the
/// windowed kernels; odd image sizes, a 1×1 image.
#[test]
fn global_avgpool_matches_cpu() -> R {
    let g = gpu();
    // (batch, h, w, channels, pool beyond the image): a window larger than the image with
    // 'same' padding is clipped to the whole image.
    let shapes = [
        (3, 7, 5, 12, 0),
        (2, 8, 8, 64, 0),
        (1, 1, 1, 4, 0),
        (2, 9, 3, 6, 0),
        (2, 5, 3, 8, 2),
    ];
    for (i, (batch, h, w, c, beyond)) in shapes.into_iter().enumerate() {
        let s = Pool2dShape {
            batch,
            in_h: h,
            in_w: w,
            c,
            pool_h: h + beyond,
            pool_w: w + beyond,
            stride_h: h + beyond,
            stride_w: w + beyond,
            padding: if beyond > 0 {
                Padding::Same
            } else {
                Padding::Valid
            },
        };
        assert_eq!((s.out_h(), s.out_w()), (1, 1), "{s:?}");
        let x = random_vec(s.input_len(), 90 + i as u64);
        let dy = random_vec(s.output_len(), 95 + i as u64);
        let prior = random_vec(s.input_len(), 99 + i as u64);
        let tx = Tensor::from_slice(&g, &[x.len()], &x, "x")?;
        let tdy = Tensor::from_slice(&g, &[dy.len()], &dy, "dy")?;
        let y = poisoned(&g, &[s.output_len()], "y");
        let dx = poisoned(&g, &[s.input_len()], "dx");
        let acc = Tensor::from_slice(&g, &[prior.len()], &prior, "dx + prior")?;
        let passes = [
            avgpool2d_forward(&g, &y, &tx, &s)?,
            avgpool2d_backward(&g, &dx, &tdy, &s, false)?,
            avgpool2d_backward(&g, &acc, &tdy, &s, true)?,
        ];
        let global = c % 4 == 0;
        for d in &passes {
            assert_eq!(
                d.kernel == Kernel::GlobalAvgPool2d,
                global,
                "{s:?}: {:?}",
                d.kernel
            );
        }
        g.run(&passes.iter().collect::<Vec<_>>())?;
        let (mut wy, mut wdx, mut wacc) = (vec![0.0; s.output_len()], vec![0.0; x.len()], prior);
        avgpool2d_forward_cpu(&mut wy, &x, &s);
        avgpool2d_backward_cpu(&mut wdx, &dy, &s);
        avgpool2d_backward_cpu(&mut wacc, &dy, &s);
        let tag = format!("global avgpool {s:?}");
        assert_close(&format!("{tag} forward"), &y.read(&g)?, &wy, 1e-6, 1e-5)?;
        assert_close(&format!("{tag} backward"), &dx.read(&g)?, &wdx, 1e-6, 1e-5)?;
        assert_close(
            &format!("{tag} accumulate"),
            &acc.read(&g)?,
            &wacc,
            1e-6,
            1e-5,
        )?;
    }
    Ok(())
}

#[test]
fn activations_match_cpu() -> R {
    let g = gpu();
    for act in every_activation() {
        let n = 1037;
        // Past relu6's cap and hard sigmoid's ±3.
        let x: Vec<f32> = random_vec(n, 80).iter().map(|v| v * 8.0).collect();
        let dy = random_vec(n, 81);
        let tx = Tensor::from_slice(&g, &[n], &x, "x")?;
        let y = poisoned(&g, &[n], "y");
        let grad = Tensor::from_slice(&g, &[n], &dy, "grad")?;
        g.run(&[
            &activation_forward(&g, &y, &tx, act)?,
            &activation_backward(&g, &grad, &y, &tx, act)?,
        ])?;
        let (mut wy, mut wg) = (vec![0.0; n], dy.clone());
        activation_forward_cpu(&mut wy, &x, act);
        activation_backward_cpu(&mut wg, &wy, &x, act);
        assert_close(&format!("{act:?} forward"), &y.read(&g)?, &wy, 1e-6, 1e-5)?;
        assert_close(
            &format!("{act:?} backward"),
            &grad.read(&g)?,
            &wg,
            1e-6,
            1e-5,
        )?;
    }
    Ok(())
}

#[test]
fn softmax_xent_and_metrics_match_cpu() -> R {
    let g = gpu();
    for (rows, cols, valid) in [(1, 10, 1), (37, 10, 37), (64, 7, 50), (130, 3, 129)] {
        // Large logits: the max subtraction must keep exp() finite.
        let z: Vec<f32> = random_vec(rows * cols, rows as u64)
            .iter()
            .map(|v| v * 60.0)
            .collect();
        let labels = random_labels(rows, cols, 5);
        let br = BatchRows::new(&g, rows, cols)?;
        br.set_valid(&g, valid)?;
        let tz = Tensor::from_slice(&g, &[rows, cols], &z, "z")?;
        let tl = Tensor::from_slice(&g, &[rows], &labels, "labels")?;
        let (probs, loss, dz, sm) = (
            poisoned(&g, &[rows, cols], "p"),
            poisoned(&g, &[rows], "loss"),
            poisoned(&g, &[rows, cols], "dz"),
            poisoned(&g, &[rows, cols], "softmax"),
        );
        let totals = Tensor::from_slice(&g, &[2], &[1.5f32, 2.0], "totals")?;
        g.run(&[
            &softmax_xent_forward(&g, &probs, &loss, &tz, &tl, &br)?,
            &softmax_xent_backward(&g, &dz, &probs, &tl, &br)?,
            &loss_metrics(&g, &totals, &probs, &tl, &loss, &br)?,
            &softmax(&g, &sm, &tz, &br)?,
        ])?;
        let (mut wp, mut wl, mut wdz) = (
            vec![0.0; rows * cols],
            vec![0.0; rows],
            vec![0.0; rows * cols],
        );
        softmax_xent_forward_cpu(&mut wp, &mut wl, &z, &labels, cols, valid);
        softmax_xent_backward_cpu(&mut wdz, &wp, &labels, cols, valid);
        let (lsum, hits) = loss_metrics_cpu(&wp, &labels, &wl, (cols, 0), valid);
        assert_close("softmax probs", &probs.read(&g)?, &wp, 1e-6, 1e-4)?;
        assert_close("softmax (inference)", &sm.read(&g)?, &wp, 1e-6, 1e-4)?;
        assert_close("xent loss", &loss.read(&g)?, &wl, 1e-4, 1e-4)?;
        assert_close("xent dlogits", &dz.read(&g)?, &wdz, 1e-6, 1e-4)?;
        let t = totals.read::<f32>(&g)?;
        assert_close(
            "metric totals",
            &t,
            &[1.5 + lsum as f32, 2.0 + hits as f32],
            1e-3,
            1e-4,
        )?;
    }
    Ok(())
}

#[test]
fn optimizers_match_cpu() -> R {
    let g = gpu();
    let n = 1001; // not a whole number of vec4s
    let cosine = LearningRate::CosineDecay {
        initial: 0.02,
        decay_steps: 4,
        alpha: 0.1,
        warmup_target: Some(0.05),
        warmup_steps: 2,
    };
    for opt in [
        Optimizer::sgd(0.1),
        Optimizer::sgd(0.05).momentum(0.9),
        Optimizer::sgd(0.05).momentum(0.9).nesterov(true),
        Optimizer::sgd(0.05).momentum(0.9).weight_decay(0.01),
        Optimizer::adam(),
        Optimizer::adam().learning_rate(0.01),
        Optimizer::adamw(),
        Optimizer::adamw().learning_rate(LearningRate::exponential_decay(0.01, 2, 0.5)),
        Optimizer::rmsprop(),
        Optimizer::rmsprop()
            .momentum(0.9)
            .learning_rate(cosine.clone()),
        Optimizer::rmsprop()
            .weight_decay(0.1)
            .learning_rate(LearningRate::piecewise_constant(
                &[1, 3],
                &[0.01, 0.005, 0.001],
            )),
        Optimizer::adam().amsgrad(true).beta_1(0.8).epsilon(1e-4),
        Optimizer::adamw().amsgrad(true).clipvalue(0.3),
        Optimizer::rmsprop().centered(true).momentum(0.5).rho(0.8),
        Optimizer::sgd(0.1).momentum(0.9).clipvalue(0.2),
    ] {
        let mut w = random_vec(n, 90);
        let tw = Tensor::from_slice(&g, &[n], &w, "w")?;
        let mut state: Vec<Vec<f32>> = (0..opt.slots()).map(|_| vec![0.0; n]).collect();
        let tstate: Vec<Tensor> = (0..opt.slots())
            .map(|_| Tensor::zeros(&g, &[n], "state").unwrap())
            .collect();
        let tg = Tensor::zeros(&g, &[n], "grad")?;
        let uniform = Uniform::new(&g, &opt.params(1), "opt");
        let d = opt.update(&g, &uniform, &tw, &tg, &tstate)?;
        // Six steps: through every phase of the schedules above.
        for t in 1..=6u64 {
            let grad = random_vec(n, 91 + t);
            tg.write(&g, &grad)?;
            uniform.set(&g, &opt.params(t));
            g.run(&[&d])?;
            opt.update_cpu(&mut w, &grad, &mut state, t);
        }
        assert_close(&format!("{opt:?}"), &tw.read(&g)?, &w, 1e-6, 1e-5)?;
    }
    Ok(())
}

/// Keras' formulas at hand-checked points (values computed from the definitions).
#[test]
fn schedules_follow_keras() {
    let close = |a: f32, b: f64| assert!((f64::from(a) - b).abs() < 1e-7, "{a} vs {b}");
    let e = LearningRate::exponential_decay(0.1, 10, 0.5);
    close(e.at(0), 0.1);
    close(e.at(10), 0.05);
    close(e.at(5), 0.1 * 0.5f64.sqrt());
    let stair = LearningRate::ExponentialDecay {
        initial: 0.1,
        decay_steps: 10,
        decay_rate: 0.5,
        staircase: true,
    };
    close(stair.at(19), 0.05);
    let c = LearningRate::cosine_decay(1.0, 100);
    close(c.at(0), 1.0);
    close(c.at(50), 0.5);
    close(c.at(100), 0.0);
    close(c.at(250), 0.0); // held at the end, as Keras' min(step, decay_steps)
    let w = LearningRate::CosineDecay {
        initial: 0.0,
        decay_steps: 10,
        alpha: 0.2,
        warmup_target: Some(1.0),
        warmup_steps: 4,
    };
    close(w.at(2), 0.5); // halfway through the warm-up
    close(w.at(4), 1.0);
    close(w.at(14), 0.2); // alpha·target at the end
    let pw = LearningRate::piecewise_constant(&[10, 20], &[1.0, 0.5, 0.1]);
    close(pw.at(10), 1.0);
    close(pw.at(11), 0.5);
    close(pw.at(20), 0.5);
    close(pw.at(21), 0.1);
    assert!(
        LearningRate::piecewise_constant(&[10], &[1.0])
            .validate()
            .is_err()
    );
    assert!(LearningRate::cosine_decay(1.0, 0).validate().is_err());
    // The optimizer's uniform for step t uses iteration t − 1, and AdamW decays by lr·wd.
    let opt = Optimizer::adamw().learning_rate(e);
    assert_eq!(opt.params(11)[4], 0.05 * 0.004);
    assert_eq!(opt.name(), "AdamW");
}

fn batchnorm_shapes() -> Vec<(usize, usize, usize)> {
    // (rows, channels, valid rows): conv-like and dense-like, channels not multiples of 4,
    // a partial batch, one row.
    vec![
        (6 * 7 * 7, 8, 6 * 7 * 7),
        (5 * 9, 3, 2 * 9),
        (37, 10, 37),
        (200, 33, 123),
        (1, 4, 1),
        (64 * 3, 16, 64 * 3),
    ]
}

#[test]
fn batchnorm_matches_cpu() -> R {
    let g = gpu();
    for (i, (rows, c, valid)) in batchnorm_shapes().into_iter().enumerate() {
        let seed = 300 + 10 * i as u64;
        // Inputs far from zero mean and unit variance, as after a conv.
        let x: Vec<f32> = random_vec(rows * c, seed)
            .iter()
            .map(|v| 3.0 + 2.5 * v)
            .collect();
        let gamma: Vec<f32> = random_vec(c, seed + 1).iter().map(|v| 1.0 + v).collect();
        let beta = random_vec(c, seed + 2);
        let mm0 = random_vec(c, seed + 3);
        let mv0: Vec<f32> = random_vec(c, seed + 4)
            .iter()
            .map(|v| 1.0 + v.abs())
            .collect();
        let dy = random_vec(rows * c, seed + 5);
        let t = |v: &[f32], what| Tensor::from_slice(&g, &[v.len()], v, what).unwrap();
        let (tx, tg, tb, tmm, tmv, tdy) = (
            t(&x, "x"),
            t(&gamma, "gamma"),
            t(&beta, "beta"),
            t(&mm0, "mm"),
            t(&mv0, "mv"),
            t(&dy, "dy"),
        );
        let (y, saved, dx, dgamma, dbeta) = (
            poisoned(&g, &[rows * c], "y"),
            poisoned(&g, &[saved_len(c)], "saved"),
            poisoned(&g, &[rows * c], "dx"),
            poisoned(&g, &[c], "dgamma"),
            poisoned(&g, &[c], "dbeta"),
        );
        for training in [true, false] {
            let p = BatchNormParams::new(rows, c, training, 0.9, 1e-3)?.with_valid(valid);
            let u = Uniform::new(&g, &p, "bn");
            tmm.write(&g, &mm0)?;
            tmv.write(&g, &mv0)?;
            let params = [&tg, &tb, &tmm, &tmv];
            let fwd = batchnorm_forward(&g, &y, &tx, params, &saved, &u, &p)?;
            let (mut want_y, mut mm, mut mv) = (vec![0.0; rows * c], mm0.clone(), mv0.clone());
            let state = BatchNormState {
                gamma: &gamma,
                beta: &beta,
                moving_mean: &mut mm,
                moving_var: &mut mv,
            };
            let want_saved = batchnorm_forward_cpu(&mut want_y, &x, state, &p);
            let tag = format!("batchnorm {rows}x{c} valid {valid} training={training}");
            if training {
                let bwd =
                    batchnorm_backward(&g, &dx, &dgamma, &dbeta, &tdy, &tx, &tg, &saved, &u, &p)?;
                g.run(&[&fwd, &bwd])?;
                let (mut wdx, mut wdg, mut wdb) = (vec![0.0; rows * c], vec![0.0; c], vec![0.0; c]);
                batchnorm_backward_cpu(
                    &mut wdx,
                    &mut wdg,
                    &mut wdb,
                    &dy,
                    &x,
                    &gamma,
                    &want_saved,
                    &p,
                );
                assert_close(
                    &format!("{tag} saved"),
                    &saved.read(&g)?,
                    &want_saved,
                    1e-5,
                    1e-4,
                )?;
                assert_close(&format!("{tag} dx"), &dx.read(&g)?, &wdx, 1e-4, 1e-3)?;
                assert_close(
                    &format!("{tag} dgamma"),
                    &dgamma.read(&g)?,
                    &wdg,
                    1e-3,
                    1e-3,
                )?;
                assert_close(&format!("{tag} dbeta"), &dbeta.read(&g)?, &wdb, 1e-3, 1e-3)?;
            } else {
                g.run(&[&fwd])?;
            }
            assert_close(&format!("{tag} y"), &y.read(&g)?, &want_y, 1e-4, 1e-3)?;
            assert_close(
                &format!("{tag} moving mean"),
                &tmm.read(&g)?,
                &mm,
                1e-5,
                1e-4,
            )?;
            assert_close(
                &format!("{tag} moving variance"),
                &tmv.read(&g)?,
                &mv,
                1e-5,
                1e-4,
            )?;
            if !training {
                assert_eq!(mm, mm0, "inference leaves the moving statistics alone");
            }
        }
    }
    Ok(())
}

#[test]
fn dropout_matches_cpu() -> R {
    let g = gpu();
    let n = 5003;
    let x = random_vec(n, 7);
    let p = DropoutParams::new(n, 0.3, 12345)?;
    let u = Uniform::new(&g, &p, "dropout");
    let tx = Tensor::from_slice(&g, &[n], &x, "x")?;
    let (y, dx) = (poisoned(&g, &[n], "y"), poisoned(&g, &[n], "dx"));
    g.run(&[
        &dropout_forward(&g, &y, &tx, &u)?,
        &dropout_backward(&g, &dx, &tx, &u)?,
    ])?;
    let (mut wy, mut wdx) = (vec![0.0; n], vec![0.0; n]);
    dropout_forward_cpu(&mut wy, &x, &p);
    dropout_backward_cpu(&mut wdx, &x, &p);
    assert_close("dropout forward", &y.read(&g)?, &wy, 1e-6, 1e-6)?;
    assert_close("dropout backward", &dx.read(&g)?, &wdx, 1e-6, 1e-6)?;
    let dropped = wy.iter().filter(|v| **v == 0.0).count() as f32 / n as f32;
    assert!((dropped - 0.3).abs() < 0.03, "dropped fraction {dropped}");
    // A shard starting at element 1,201 (a rank's part of a batch) with that offset draws
    // the whole tensor's masks for its elements, on the GPU and the CPU.
    let (start, len) = (1201, 1799);
    let ps = DropoutParams::new(len, 0.3, 12345)?.with_offset(start);
    let us = Uniform::new(&g, &ps, "dropout shard");
    let ts = Tensor::from_slice(&g, &[len], &x[start..start + len], "x shard")?;
    let (ys, dxs) = (poisoned(&g, &[len], "ys"), poisoned(&g, &[len], "dxs"));
    g.run(&[
        &dropout_forward(&g, &ys, &ts, &us)?,
        &dropout_backward(&g, &dxs, &ts, &us)?,
    ])?;
    let whole = &wy[start..start + len];
    assert_eq!(
        ys.read::<f32>(&g)?,
        whole,
        "shard forward = slice of the whole"
    );
    assert_eq!(dxs.read::<f32>(&g)?, &wdx[start..start + len]);
    let mut cs = vec![0.0; len];
    dropout_forward_cpu(&mut cs, &x[start..start + len], &ps);
    assert_eq!(cs, whole);
    Ok(())
}

/// Every merge function forward (plain and accumulating) and backward, on sizes that are
/// not whole vec4s, with ties for maximum and minimum, a tensor merged with itself, and
/// outputs poisoned first.
#[test]
fn merges_match_cpu() -> R {
    let g = gpu();
    let ops = [
        MergeOp::Add,
        MergeOp::Subtract,
        MergeOp::Multiply,
        MergeOp::Maximum,
        MergeOp::Minimum,
    ];
    for n in [1, 7, 1003] {
        let a = random_vec(n, 1);
        let mut b = random_vec(n, 2);
        b[0] = a[0]; // a tie: maximum and minimum send the gradient to a
        let dy = random_vec(n, 3);
        let base = random_vec(n, 4);
        let (ta, tb) = (
            Tensor::from_slice(&g, &[n], &a, "a")?,
            Tensor::from_slice(&g, &[n], &b, "b")?,
        );
        let tdy = Tensor::from_slice(&g, &[n], &dy, "dy")?;
        for op in ops.into_iter().chain([MergeOp::First]) {
            for (scale, accumulate) in [(1.0, false), (0.25, true)] {
                let y = if accumulate {
                    Tensor::from_slice(&g, &[n], &base, "y")?
                } else {
                    poisoned(&g, &[n], "y")
                };
                g.run(&[&merge_forward(&g, &y, &ta, &tb, op, scale, accumulate)?])?;
                let mut want = base.clone();
                merge_forward_cpu(&mut want, &a, &b, op, scale, accumulate);
                let what = format!("{op:?} forward n={n} scale={scale} accumulate={accumulate}");
                assert_close(&what, &y.read(&g)?, &want, 1e-6, 1e-6)?;
            }
            if op == MergeOp::First {
                continue;
            }
            for (x1, x2, same) in [(&ta, &tb, false), (&ta, &ta, true)] {
                let (da, db) = (poisoned(&g, &[n], "da"), poisoned(&g, &[n], "db"));
                g.run(&[&merge_backward(&g, &da, &db, &tdy, x1, x2, op, 0.5)?])?;
                let second = if same { &a } else { &b };
                let (mut wa, mut wb) = (vec![0.0; n], vec![0.0; n]);
                merge_backward_cpu(&mut wa, &mut wb, &dy, &a, second, op, 0.5);
                let what = format!("{op:?} backward n={n} self-merge={same}");
                assert_close(&format!("{what} da"), &da.read(&g)?, &wa, 1e-6, 1e-6)?;
                assert_close(&format!("{what} db"), &db.read(&g)?, &wb, 1e-6, 1e-6)?;
            }
        }
        // Ties by hand: maximum's and minimum's gradient goes to the first input.
        let mut wa = vec![0.0; n];
        let mut wb = vec![0.0; n];
        merge_backward_cpu(&mut wa, &mut wb, &dy, &a, &b, MergeOp::Maximum, 1.0);
        assert_eq!((wa[0], wb[0]), (dy[0], 0.0));
    }
    Ok(())
}

/// Concatenate's column copies: inputs of odd widths into the output and back out of its
/// gradient, on shapes that view other axes as columns; unwritten elements stay NaN.
#[test]
fn concatenate_copies_match_cpu() -> R {
    let g = gpu();
    for (rows, widths) in [(1, vec![1, 2]), (37, vec![3, 5, 1]), (129, vec![16, 7])] {
        let total: usize = widths.iter().sum();
        let out = poisoned(&g, &[rows * total], "concatenated");
        let dy = random_vec(rows * total, 9);
        let tdy = Tensor::from_slice(&g, &[rows * total], &dy, "dy")?;
        let mut want = vec![f32::NAN; rows * total];
        let mut offset = 0;
        for (i, &w) in widths.iter().enumerate() {
            let x = random_vec(rows * w, i as u64);
            let tx = Tensor::from_slice(&g, &[rows * w], &x, "input")?;
            let fwd = Columns::into_output(rows, w, offset, total);
            g.run(&[&copy_columns(&g, &out, &tx, &fwd, false)?])?;
            copy_columns_cpu(&mut want, &x, &fwd, false);
            let back = Columns::out_of_output(rows, w, offset, total);
            let dx = poisoned(&g, &[rows * w], "input gradient");
            g.run(&[&copy_columns(&g, &dx, &tdy, &back, false)?])?;
            let mut wdx = vec![f32::NAN; rows * w];
            copy_columns_cpu(&mut wdx, &dy, &back, false);
            assert_close("concatenate backward", &dx.read(&g)?, &wdx, 0.0, 0.0)?;
            // Accumulating (a padded convolution's kernel gradient back into the kernel's).
            let prior = random_vec(rows * w, 40 + i as u64);
            let acc = Tensor::from_slice(&g, &[rows * w], &prior, "accumulated")?;
            g.run(&[&copy_columns(&g, &acc, &tdy, &back, true)?])?;
            let mut wacc = prior.clone();
            copy_columns_cpu(&mut wacc, &dy, &back, true);
            assert_close("column copy, accumulating", &acc.read(&g)?, &wacc, 0.0, 0.0)?;
            offset += w;
        }
        assert_close("concatenate forward", &out.read(&g)?, &want, 0.0, 0.0)?;
    }
    // A copy that would run past either tensor is an error, not a wild write.
    let small = poisoned(&g, &[4], "small");
    let bad = Columns::into_output(2, 3, 2, 4);
    assert!(copy_columns(&g, &small, &small, &bad, false).is_err());
    Ok(())
}

/// The L2 penalty joins the loss total once per valid sample, and its gradient the
/// kernel's; sizes that are not multiples of the 64 lanes or of vec4s.
#[test]
fn l2_penalty_and_gradient_match_cpu() -> R {
    let g = gpu();
    for (n, valid) in [(1, 1), (37, 5), (4_099, 8)] {
        let w = random_vec(n, 1);
        let tw = Tensor::from_slice(&g, &[n], &w, "w")?;
        let totals = Tensor::from_slice(&g, &[2], &[1.5f32, 2.0], "totals")?;
        let rows = BatchRows::new(&g, 8, 3)?;
        rows.set_valid(&g, valid)?;
        let base = random_vec(n, 2);
        let grad = Tensor::from_slice(&g, &[n], &base, "grad")?;
        g.run(&[
            &l2_penalty(&g, &totals, &tw, 0.01, &rows)?,
            &l2_gradient(&g, &grad, &tw, 0.01)?,
        ])?;
        let want = 1.5 + valid as f64 * l2_penalty_cpu(&w, 0.01);
        assert_close(
            "l2 penalty",
            &totals.read(&g)?,
            &[want as f32, 2.0],
            1e-5,
            1e-5,
        )?;
        let mut wg = base.clone();
        l2_gradient_cpu(&mut wg, &w, 0.01);
        assert_close("l2 gradient", &grad.read(&g)?, &wg, 1e-7, 1e-6)?;
    }
    Ok(())
}

#[test]
fn dispatch_over_65535_workgroups_is_split() -> R {
    let g = gpu();
    // Max pooling with C = 1 runs one invocation per output element, 256 per workgroup:
    // a 2048 × 2050 single-channel image pooled 1×1 needs 16,400 workgroups… so use
    // 4 images of that size: 65,600 workgroups → a 2-D grid.
    let s = Pool2dShape {
        batch: 4,
        in_h: 2048,
        in_w: 2050,
        c: 1,
        pool_h: 1,
        pool_w: 1,
        stride_h: 1,
        stride_w: 1,
        padding: Padding::Valid,
    };
    let x = random_vec(s.input_len(), 3);
    let tx = Tensor::from_slice(&g, &[x.len()], &x, "x")?;
    let y = poisoned(&g, &[s.output_len()], "y");
    let arg = Tensor::zeros(&g, &[s.output_len()], "argmax")?;
    let d = maxpool2d_forward(&g, &y, &arg, &tx, &s)?;
    assert!(
        d.groups()[1] > 1 && u64::from(d.groups()[0]) * u64::from(d.groups()[1]) > 65_535,
        "grid {:?}",
        d.groups()
    );
    g.run(&[&d])?;
    // A 1×1 max pool is the identity: every element must have been written.
    assert_close("maxpool over 65,600 workgroups", &y.read(&g)?, &x, 0.0, 0.0)?;
    Ok(())
}

#[test]
fn grid_splits_and_rejects() {
    assert_eq!(wgcnn::gpu::grid(10, 65535).unwrap(), [10, 1, 1]);
    let [x, y, _] = wgcnn::gpu::grid(70_001, 65535).unwrap();
    assert!(x <= 65535 && u64::from(x) * u64::from(y) >= 70_001);
    assert!(wgcnn::gpu::grid(65535 * 65535 + 1, 65535).is_err());
}

#[test]
fn tensor_over_binding_limit_is_a_clear_error() {
    let g = gpu();
    let max = g
        .limits
        .max_storage_buffer_binding_size
        .min(g.limits.max_buffer_size);
    let elems = (max / 4 + 1) as usize;
    let err = Tensor::zeros(&g, &[elems], "huge activation")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("huge activation") && err.contains("binds at most"),
        "{err}"
    );
}

#[test]
fn wrong_sizes_are_errors_not_panics() {
    let g = gpu();
    let s = conv_shapes()[0];
    let x = Tensor::zeros(&g, &[s.input_len() + 1], "x").unwrap();
    let w = Tensor::zeros(&g, &[s.weight_len()], "w").unwrap();
    let b = Tensor::zeros(&g, &[s.out_c], "b").unwrap();
    let out = Tensor::zeros(&g, &[s.output_len()], "out").unwrap();
    let err = conv2d_forward(&g, &out, &x, &w, &b, &s, false)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("conv2d input"), "{err}");
    let too_big = Conv2dShape { k_h: 9, ..s };
    let err = conv2d_forward(&g, &out, &x, &w, &b, &too_big, false)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("does not fit"), "{err}");
}

#[test]
fn transpose_matches_cpu() -> R {
    let g = gpu();
    // Every alignment case of the 4×4-block kernel: rows and/or cols multiples of 4 or not.
    let shapes = [
        (1, 1, 1),
        (1, 7, 13),
        (9, 3, 64),
        (2, 130, 5),
        (3, 8, 12),
        (2, 12, 5),
        (1, 32, 4100),
        (1, 43264, 10),
    ];
    for (batch, rows, cols) in shapes {
        let n = batch * rows * cols;
        let x = random_vec(n, n as u64);
        let tx = Tensor::from_slice(&g, &[n], &x, "x")?;
        let out = poisoned(&g, &[n], "out");
        g.run(&[&wgcnn::ops::transpose::transpose(
            &g, &out, &tx, batch, rows, cols,
        )?])?;
        let mut want = vec![0.0; n];
        wgcnn::ops::transpose::transpose_cpu(&mut want, &x, batch, rows, cols);
        assert_close(
            &format!("transpose {batch}x{rows}x{cols}"),
            &out.read(&g)?,
            &want,
            0.0,
            0.0,
        )?;
    }
    Ok(())
}

/// The strided gathers the input gradient of a strided convolution records: every
/// stride-th tap of a kernel's tap grid, into a given place of the output, with rows and
/// columns aligned or not; the matrices not picked keep what they held.
#[test]
fn transpose_gather_matches_cpu() -> R {
    use wgcnn::ops::transpose::{MatrixGather, transpose_gather, transpose_gather_cpu};
    let g = gpu();
    let gather = |outer, inner, start, step_outer, step_inner, out_start| MatrixGather {
        outer,
        inner,
        start,
        step_outer,
        step_inner,
        out_start,
    };
    // (matrices in, out, rows, cols, gather)
    let cases = [
        (9, 9, 8, 12, gather(2, 2, 0, 6, 2, 0)),
        (9, 9, 8, 12, gather(2, 1, 1, 6, 2, 4)),
        (9, 9, 3, 5, gather(1, 2, 3, 6, 2, 6)),
        (13, 7, 4, 4, gather(3, 2, 1, 4, 3, 1)),
        (5, 5, 7, 13, MatrixGather::all(5)),
    ];
    for (n_in, n_out, rows, cols, gt) in cases {
        let x = random_vec(n_in * rows * cols, (n_in + rows) as u64);
        let tx = Tensor::from_slice(&g, &[x.len()], &x, "x")?;
        // Random contents (not NaN poison) so that the matrices not picked compare equal.
        let before = random_vec(n_out * rows * cols, 99);
        let out = Tensor::from_slice(&g, &[before.len()], &before, "out")?;
        g.run(&[&transpose_gather(&g, &out, &tx, rows, cols, &gt)?])?;
        let mut want = before;
        transpose_gather_cpu(&mut want, &x, rows, cols, &gt);
        assert_close(
            &format!("transpose gather {gt:?} of {rows}x{cols}"),
            &out.read(&g)?,
            &want,
            0.0,
            0.0,
        )?;
    }
    // A gather past either end is an error, not a dispatch.
    let tx = Tensor::zeros(&g, &[9 * 16], "x")?;
    let out = Tensor::zeros(&g, &[9 * 16], "out")?;
    assert!(transpose_gather(&g, &out, &tx, 4, 4, &gather(2, 2, 0, 6, 4, 0)).is_err());
    assert!(transpose_gather(&g, &out, &tx, 4, 4, &gather(2, 2, 0, 6, 2, 7)).is_err());
    Ok(())
}

/// ZeroPadding2D / Cropping2D windows: asymmetric, odd sizes and channels, and each
/// one's gradient (the reversed window) accumulating onto an existing gradient.
fn pad2d_shapes() -> Vec<Pad2dShape> {
    vec![
        Pad2dShape::padding(2, [5, 7, 3], [[1, 2], [0, 3]]),
        Pad2dShape::padding(3, [4, 3, 5], [[2, 2], [1, 1]]),
        Pad2dShape::cropping(2, [9, 8, 3], [[1, 3], [2, 0]]),
        Pad2dShape::cropping(1, [6, 5, 7], [[0, 0], [1, 1]]),
    ]
}

#[test]
fn pad2d_matches_cpu() -> R {
    let g = gpu();
    for (i, s) in pad2d_shapes().iter().enumerate() {
        let x = random_vec(s.input_len(), 90 + i as u64);
        let dy = random_vec(s.output_len(), 95 + i as u64);
        let dx0 = random_vec(s.input_len(), 99 + i as u64);
        let tx = Tensor::from_slice(&g, &[x.len()], &x, "x")?;
        let tdy = Tensor::from_slice(&g, &[dy.len()], &dy, "dy")?;
        let y = poisoned(&g, &[s.output_len()], "y");
        let dx = Tensor::from_slice(&g, &[dx0.len()], &dx0, "dx")?;
        g.run(&[
            &pad2d(&g, &y, &tx, s, false)?,
            &pad2d(&g, &dx, &tdy, &s.reversed(), true)?,
        ])?;
        let (mut wy, mut wdx) = (vec![0.0; s.output_len()], dx0.clone());
        pad2d_cpu(&mut wy, &x, s);
        pad2d_cpu(&mut wdx, &dy, &s.reversed());
        assert_close(&format!("pad2d {s:?}"), &y.read(&g)?, &wy, 0.0, 0.0)?;
        assert_close(
            &format!("pad2d grad {s:?}"),
            &dx.read(&g)?,
            &wdx,
            1e-6,
            1e-6,
        )?;
    }
    Ok(())
}

#[test]
fn upsampling2d_matches_cpu() -> R {
    let g = gpu();
    let mut cases = Vec::new();
    for interpolation in [Interpolation::Nearest, Interpolation::Bilinear] {
        for (batch, in_h, in_w, c, scale_h, scale_w) in [
            (2, 5, 3, 3, 2, 2),
            (1, 4, 7, 5, 3, 1),
            (3, 1, 2, 2, 2, 3),
            (1, 6, 6, 4, 4, 4),
        ] {
            cases.push(UpSampling2dShape {
                batch,
                in_h,
                in_w,
                c,
                scale_h,
                scale_w,
                interpolation,
            });
        }
    }
    for (i, s) in cases.iter().enumerate() {
        let x = random_vec(s.input_len(), 110 + i as u64);
        let dy = random_vec(s.output_len(), 130 + i as u64);
        let tx = Tensor::from_slice(&g, &[x.len()], &x, "x")?;
        let tdy = Tensor::from_slice(&g, &[dy.len()], &dy, "dy")?;
        let (y, dx) = (
            poisoned(&g, &[s.output_len()], "y"),
            poisoned(&g, &[s.input_len()], "dx"),
        );
        // Accumulating onto random values, the second backward pass doubles them.
        let dx2_0 = random_vec(s.input_len(), 150 + i as u64);
        let dx2 = Tensor::from_slice(&g, &[dx2_0.len()], &dx2_0, "dx2")?;
        g.run(&[
            &upsampling2d_forward(&g, &y, &tx, s)?,
            &upsampling2d_backward(&g, &dx, &tdy, s, false)?,
            &upsampling2d_backward(&g, &dx2, &tdy, s, true)?,
        ])?;
        let (mut wy, mut wdx) = (vec![0.0; s.output_len()], vec![0.0; s.input_len()]);
        upsampling2d_forward_cpu(&mut wy, &x, s);
        upsampling2d_backward_cpu(&mut wdx, &dy, s);
        let mut wdx2 = dx2_0.clone();
        upsampling2d_backward_cpu(&mut wdx2, &dy, s);
        assert_close(&format!("upsampling {s:?}"), &y.read(&g)?, &wy, 1e-6, 1e-5)?;
        assert_close(
            &format!("upsampling dx {s:?}"),
            &dx.read(&g)?,
            &wdx,
            1e-5,
            1e-5,
        )?;
        assert_close(
            &format!("upsampling dx+= {s:?}"),
            &dx2.read(&g)?,
            &wdx2,
            1e-5,
            1e-5,
        )?;
    }
    Ok(())
}

fn conv_transpose_shapes() -> Vec<Conv2dTransposeShape> {
    let t = |batch, in_h, in_w, in_c, filters, k_h, k_w, stride_h, stride_w, padding| {
        Conv2dTransposeShape {
            batch,
            in_h,
            in_w,
            in_c,
            filters,
            k_h,
            k_w,
            stride_h,
            stride_w,
            padding,
        }
    };
    vec![
        t(2, 3, 4, 3, 5, 3, 3, 2, 2, Padding::Same),
        t(1, 5, 3, 8, 4, 4, 3, 2, 3, Padding::Same),
        t(2, 4, 4, 4, 8, 3, 3, 2, 2, Padding::Valid),
        t(1, 3, 5, 2, 3, 2, 2, 3, 2, Padding::Valid),
        t(3, 5, 5, 6, 1, 3, 3, 1, 1, Padding::Same),
    ]
}

/// Conv2DTranspose on conv2d's kernels, against its direct (scatter) CPU reference, on
/// every family; poisoned outputs, bias and no bias.
#[test]
fn conv2d_transpose_matches_cpu() -> R {
    for g in gpus() {
        for (i, s) in conv_transpose_shapes().iter().enumerate() {
            let seed = 200 + 10 * i as u64;
            let x = random_vec(s.input_len(), seed);
            let w = random_vec(s.weight_len(), seed + 1);
            let b = random_vec(s.filters, seed + 2);
            let dy = random_vec(s.output_len(), seed + 3);
            let t = |v: &[f32], name| Tensor::from_slice(&g, &[v.len()], v, name);
            let (tx, tw, tb, tdy) = (t(&x, "x")?, t(&w, "w")?, t(&b, "b")?, t(&dy, "dy")?);
            let zero = Tensor::zeros(&g, &[s.in_c], "zero bias")?;
            let bias = (i % 2 == 0).then_some(&tb);
            let y = poisoned(&g, &[s.output_len()], "y");
            let dx = poisoned(&g, &[s.input_len()], "dx");
            let dw = poisoned(&g, &[s.weight_len()], "dw");
            let db = poisoned(&g, &[s.filters], "db");
            g.run(&[
                &conv2d_transpose_forward(&g, &y, &tx, &tw, bias, s)?,
                &conv2d_transpose_backward_input(&g, &dx, &tdy, &tw, &zero, s)?,
                &conv2d_transpose_backward_weight(&g, &dw, Some(&db), &tdy, &tx, s, false)?,
            ])?;
            let mut wy = vec![0.0; s.output_len()];
            conv2d_transpose_forward_cpu(&mut wy, &x, &w, bias.map(|_| &b[..]), s);
            let (mut wdx, mut wdw, mut wdb) = (
                vec![0.0; s.input_len()],
                vec![0.0; s.weight_len()],
                vec![0.0; s.filters],
            );
            conv2d_transpose_backward_cpu(Some(&mut wdx), &mut wdw, Some(&mut wdb), &dy, &x, &w, s);
            let what = |p: &str| format!("conv2d transpose {p} {s:?} on {}", family(&g));
            assert_close(&what("forward"), &y.read(&g)?, &wy, 1e-5, 1e-4)?;
            assert_close(&what("dX"), &dx.read(&g)?, &wdx, 1e-5, 1e-4)?;
            assert_close(&what("dW"), &dw.read(&g)?, &wdw, 1e-4, 1e-4)?;
            assert_close(&what("db"), &db.read(&g)?, &wdb, 1e-4, 1e-4)?;
        }
    }
    Ok(())
}

#[test]
fn layernorm_matches_cpu() -> R {
    let g = gpu();
    for (i, (rows, cols)) in [(1, 1), (7, 3), (33, 10), (130, 64), (5, 257)]
        .into_iter()
        .enumerate()
    {
        let s = LayerNormShape {
            rows,
            cols,
            epsilon: 1e-3,
        };
        let seed = 300 + 10 * i as u64;
        // Offset and scaled rows: the two-pass variance must not cancel.
        let x: Vec<f32> = random_vec(s.len(), seed)
            .iter()
            .map(|v| 3.0 + 2.0 * v)
            .collect();
        let gamma = random_vec(cols, seed + 1);
        let beta = random_vec(cols, seed + 2);
        let dy = random_vec(s.len(), seed + 3);
        let dx0 = random_vec(s.len(), seed + 4);
        let t = |v: &[f32], name| Tensor::from_slice(&g, &[v.len()], v, name);
        let (tx, tg, tb, tdy) = (t(&x, "x")?, t(&gamma, "g")?, t(&beta, "b")?, t(&dy, "dy")?);
        let (y, saved) = (
            poisoned(&g, &[s.len()], "y"),
            poisoned(&g, &[s.saved_len()], "saved"),
        );
        let dx = t(&dx0, "dx")?;
        let (dg, db, prod) = (
            poisoned(&g, &[cols], "dg"),
            poisoned(&g, &[cols], "db"),
            poisoned(&g, &[s.len()], "prod"),
        );
        g.run(&[
            &layernorm_forward(&g, &y, &saved, &tx, [&tg, &tb], &s)?,
            &layernorm_backward(&g, [&dx, &dg, &db], &prod, &tdy, &tx, &tg, &saved, &s, true)?,
        ])?;
        let (mut wy, mut ws) = (vec![0.0; s.len()], vec![0.0; s.saved_len()]);
        layernorm_forward_cpu(&mut wy, &mut ws, &x, &gamma, &beta, &s);
        let (mut wdx, mut wdg, mut wdb) = (dx0.clone(), vec![0.0; cols], vec![0.0; cols]);
        layernorm_backward_cpu(&mut wdx, &mut wdg, &mut wdb, &dy, &x, &gamma, &ws, &s);
        let what = |p: &str| format!("layernorm {p} {rows}×{cols}");
        assert_close(&what("y"), &y.read(&g)?, &wy, 1e-5, 1e-4)?;
        assert_close(&what("saved"), &saved.read(&g)?, &ws, 1e-5, 1e-4)?;
        assert_close(&what("dx"), &dx.read(&g)?, &wdx, 1e-4, 1e-3)?;
        assert_close(&what("dgamma"), &dg.read(&g)?, &wdg, 1e-4, 1e-3)?;
        assert_close(&what("dbeta"), &db.read(&g)?, &wdb, 1e-4, 1e-3)?;
    }
    Ok(())
}

/// Optimizer arguments against Keras 3.15: three `apply_gradients` steps from
/// w = (0.5, −1, 2, 0.1) with fixed gradients, by the CPU reference (which
/// `optimizers_match_cpu` holds the GPU to); and the refusals of arguments that do not
/// apply.
#[test]
#[allow(clippy::excessive_precision)] // Keras' values as printed
fn optimizer_arguments_follow_keras() -> R {
    let w0 = [0.5f32, -1.0, 2.0, 0.1];
    let grads = [
        [0.3f32, -2.0, 0.05, 1.5],
        [-0.1, 0.5, 3.0, -1.0],
        [0.2, 0.2, -0.4, 0.0],
    ];
    let run = |opt: &Optimizer, extra: Option<([f32; 2], [[f32; 2]; 3])>| {
        opt.validate().expect("valid arguments");
        let mut w = w0.to_vec();
        let mut b = extra.map(|(b, _)| b.to_vec());
        let mut s: Vec<Vec<f32>> = vec![vec![0.0; 4]; opt.slots()];
        let mut sb: Vec<Vec<f32>> = vec![vec![0.0; 2]; opt.slots()];
        for (t, g) in grads.iter().enumerate() {
            let mut g = g.to_vec();
            let mut gb = extra.map(|(_, gb)| gb[t].to_vec()).unwrap_or_default();
            let mut all: Vec<&mut [f32]> = vec![&mut g[..]];
            if b.is_some() {
                all.push(&mut gb[..]);
            }
            wgcnn::ops::clip::clip_gradients_cpu(&mut all, opt.clip);
            opt.update_cpu(&mut w, &g, &mut s, t as u64 + 1);
            if let Some(b) = b.as_mut() {
                opt.update_cpu(b, &gb, &mut sb, t as u64 + 1);
            }
        }
        (w, b)
    };
    let cases = [
        (
            Optimizer::adam()
                .learning_rate(0.1)
                .beta_1(0.8)
                .beta_2(0.95)
                .epsilon(1e-3)
                .amsgrad(true),
            [0.307_823_48, -0.834_576, 1.782_915_6, -0.014_677_007],
        ),
        (
            Optimizer::rmsprop()
                .learning_rate(0.05)
                .rho(0.8)
                .momentum(0.5)
                .epsilon(1e-4)
                .centered(true),
            [0.265_860_65, -0.841_668_07, 1.633_737, -0.018_362_153],
        ),
        (
            Optimizer::sgd(0.1).momentum(0.9).clipvalue(0.5),
            [0.417_699_99, -0.979_5, 1.931_450_0, 0.059_500_005],
        ),
        (
            Optimizer::adam().learning_rate(0.1).clipnorm(1.0),
            [0.281_048_06, -0.825_393_26, 1.795_403_1, -0.043_934_412],
        ),
    ];
    for (opt, keras) in cases {
        let (w, _) = run(&opt, None);
        assert_close(&format!("{opt:?}"), &w, &keras, 1e-6, 1e-5)?;
    }
    // global_clipnorm over two variables.
    let gb = [[3.0f32, -1.0], [0.1, 0.1], [-2.0, 0.5]];
    let (w, b) = run(
        &Optimizer::sgd(0.1).global_clipnorm(1.0),
        Some(([1.0, 2.0], gb)),
    );
    let keras_w = [0.486_259_34, -0.975_559_9, 1.924_072_9, 0.094_084_18];
    assert_close("global_clipnorm w", &w, &keras_w, 1e-6, 1e-5)?;
    let keras_b = [1.017_056_9, 1.998_021_2];
    assert_close("global_clipnorm b", &b.expect("b"), &keras_b, 1e-6, 1e-5)?;
    // Arguments Keras' optimizer does not take, and two clippings, are errors at compile.
    for bad in [
        Optimizer::adam().momentum(0.9),
        Optimizer::sgd(0.1).amsgrad(true),
        Optimizer::rmsprop().nesterov(true),
        Optimizer::sgd(0.1).epsilon(1e-3),
        Optimizer::adam().rho(0.9),
        Optimizer::adam().clipnorm(1.0).clipvalue(0.5),
        Optimizer::sgd(0.1).clipnorm(0.0),
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    Ok(())
}

/// Clipping by norm on the GPU (each tensor, and global) against the CPU reference, on
/// gradients above and below the threshold.
#[test]
fn gradient_clipping_matches_cpu() -> R {
    let g = gpu();
    let sizes = [1001, 7, 64];
    for clip in [Clip::Norm(2.0), Clip::GlobalNorm(3.0), Clip::Norm(100.0)] {
        let mut host: Vec<Vec<f32>> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| random_vec(n, 400 + k as u64))
            .collect();
        let tensors: Vec<Tensor> = host
            .iter()
            .map(|v| Tensor::from_slice(&g, &[v.len()], v, "g").unwrap())
            .collect();
        let norms = poisoned(&g, &[sizes.len()], "norms");
        let refs: Vec<&Tensor> = tensors.iter().collect();
        let ds = wgcnn::ops::clip::clip_gradients(&g, &refs, &norms, clip)?;
        g.run(&ds.iter().collect::<Vec<_>>())?;
        let mut views: Vec<&mut [f32]> = host.iter_mut().map(|v| &mut v[..]).collect();
        wgcnn::ops::clip::clip_gradients_cpu(&mut views, clip);
        for (t, want) in tensors.iter().zip(&host) {
            assert_close(&format!("{clip:?}"), &t.read(&g)?, want, 1e-6, 1e-5)?;
        }
    }
    Ok(())
}

fn element_losses() -> Vec<(ElementLoss, ElementMetric)> {
    vec![
        (
            ElementLoss::MeanSquaredError,
            ElementMetric::MeanAbsoluteError,
        ),
        (
            ElementLoss::MeanAbsoluteError,
            ElementMetric::MeanSquaredError,
        ),
        (
            ElementLoss::Huber { delta: 0.3 },
            ElementMetric::MeanAbsoluteError,
        ),
        (
            ElementLoss::BinaryCrossentropy {
                from_logits: false,
                label_smoothing: 0.0,
            },
            ElementMetric::BinaryAccuracy { threshold: 0.5 },
        ),
        (
            ElementLoss::BinaryCrossentropy {
                from_logits: false,
                label_smoothing: 0.2,
            },
            ElementMetric::BinaryAccuracy { threshold: 0.5 },
        ),
        (
            ElementLoss::BinaryCrossentropy {
                from_logits: true,
                label_smoothing: 0.1,
            },
            ElementMetric::BinaryAccuracy { threshold: 0.0 },
        ),
    ]
}

/// Element-wise losses on GPU and CPU: per-sample losses and metrics, the gradient of the
/// batch mean, a partial batch (rows past the valid ones give zeros), poisoned outputs.
#[test]
fn element_losses_match_cpu() -> R {
    let g = gpu();
    for (loss, metric) in element_losses() {
        for (rows, cols, valid) in [(5, 7, 5), (9, 33, 6), (1, 1, 1)] {
            let n = rows * cols;
            let logits = matches!(
                loss,
                ElementLoss::BinaryCrossentropy {
                    from_logits: true,
                    ..
                }
            );
            let binary = matches!(loss, ElementLoss::BinaryCrossentropy { .. });
            // Probabilities in (0, 1) (a few clipped), logits and values in ±3.
            let pred: Vec<f32> = random_vec(n, 500)
                .iter()
                .map(|v| match (binary, logits) {
                    (true, false) => (0.5 + 0.55 * v).clamp(0.0, 1.0),
                    _ => 3.0 * v,
                })
                .collect();
            let target: Vec<f32> = random_vec(n, 501)
                .iter()
                .map(|v| if binary { f32::from(*v > 0.0) } else { 2.0 * v })
                .collect();
            let rows_u = BatchRows::new(&g, rows, cols)?;
            rows_u.set_valid(&g, valid)?;
            let (tp, tt) = (
                Tensor::from_slice(&g, &[n], &pred, "pred")?,
                Tensor::from_slice(&g, &[n], &target, "target")?,
            );
            let (sl, sm, dp) = (
                poisoned(&g, &[rows], "loss"),
                poisoned(&g, &[rows], "metric"),
                poisoned(&g, &[n], "dpred"),
            );
            g.run(&[
                &loss_forward(&g, &sl, &sm, &tp, &tt, &rows_u, loss, metric)?,
                &loss_backward(&g, &dp, &tp, &tt, &rows_u, loss)?,
            ])?;
            let (mut wl, mut wm, mut wd) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; n]);
            let shape = (rows, cols, valid);
            loss_forward_cpu(&mut wl, &mut wm, &pred, &target, shape, loss, metric);
            loss_backward_cpu(&mut wd, &pred, &target, shape, loss);
            let what = |p: &str| format!("{loss:?} {p} {rows}×{cols} ({valid} valid)");
            assert_close(&what("loss"), &sl.read(&g)?, &wl, 1e-5, 1e-5)?;
            assert_close(&what("metric"), &sm.read(&g)?, &wm, 1e-6, 1e-5)?;
            assert_close(&what("gradient"), &dp.read(&g)?, &wd, 1e-6, 1e-4)?;
        }
    }
    Ok(())
}

/// Keras 3.15's losses and binary accuracy on a hand-made batch (2 samples × 3).
#[test]
fn element_losses_follow_keras() -> R {
    let y = [0.9f32, 0.2, 0.5, 0.05, 0.7, 1.0];
    let t = [1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0];
    let z = [2.0f32, -1.0, 0.3, -3.0, 0.5, 4.0];
    let bce = |from_logits, label_smoothing| ElementLoss::BinaryCrossentropy {
        from_logits,
        label_smoothing,
    };
    let mae = ElementMetric::MeanAbsoluteError;
    let acc = ElementMetric::BinaryAccuracy { threshold: 0.5 };
    for (loss, pred, keras) in [
        (ElementLoss::MeanSquaredError, y, 0.232_083_35),
        (ElementLoss::MeanAbsoluteError, y, 0.358_333_35),
        (ElementLoss::Huber { delta: 0.3 }, y, 0.071_875),
        (bce(false, 0.0), y, 2.895_334_2),
        (bce(false, 0.2), y, 2.752_548_5),
        (bce(true, 0.0), z, 0.922_56),
    ] {
        let (mut l, mut m) = ([0.0f32; 2], [0.0f32; 2]);
        loss_forward_cpu(&mut l, &mut m, &pred, &t, (2, 3, 2), loss, mae);
        let mean = (l[0] + l[1]) / 2.0;
        assert_close(&format!("{loss:?}"), &[mean], &[keras], 1e-6, 1e-5)?;
    }
    let (mut l, mut m) = ([0.0f32; 2], [0.0f32; 2]);
    loss_forward_cpu(&mut l, &mut m, &y, &t, (2, 3, 2), bce(false, 0.0), acc);
    assert_close(
        "binary accuracy",
        &[(m[0] + m[1]) / 2.0],
        &[4.0 / 6.0],
        1e-7,
        0.0,
    )?;
    // Keras compares the target itself with the thresholded prediction: targets strictly
    // between 0 and 1 (grey pixels) never count.
    let grey = [1.0f32, 0.0, 0.3, 0.0, 1.0, 0.6];
    loss_forward_cpu(&mut l, &mut m, &y, &grey, (2, 3, 2), bce(false, 0.0), acc);
    let mean = (m[0] + m[1]) / 2.0;
    assert_close(
        "binary accuracy, grey targets",
        &[mean],
        &[4.0 / 6.0],
        1e-7,
        0.0,
    )?;
    Ok(())
}

/// The fused softmax + categorical cross-entropy on class distributions: GPU against the
/// CPU reference (one-hot and soft targets, label smoothing, a partial batch, poisoned
/// outputs), and Keras 3.15's values.
#[test]
fn soft_cross_entropy_matches_cpu_and_keras() -> R {
    let g = gpu();
    for (rows, cols, valid, smoothing) in [(5, 3, 5, 0.0), (9, 10, 7, 0.1), (1, 1, 1, 0.2)] {
        let z: Vec<f32> = random_vec(rows * cols, 600)
            .iter()
            .map(|v| 4.0 * v)
            .collect();
        let t: Vec<f32> = random_vec(rows * cols, 601)
            .chunks(cols)
            .flat_map(|r| {
                let w: Vec<f32> = r.iter().map(|v| v.abs()).collect();
                let s: f32 = w.iter().sum::<f32>().max(1e-3);
                w.into_iter().map(move |v| v / s)
            })
            .collect();
        let rows_u = BatchRows::new(&g, rows, cols)?;
        rows_u.set_valid(&g, valid)?;
        let (tz, tt) = (
            Tensor::from_slice(&g, &[rows * cols], &z, "z")?,
            Tensor::from_slice(&g, &[rows * cols], &t, "t")?,
        );
        let (probs, loss, hit, dz) = (
            poisoned(&g, &[rows * cols], "p"),
            poisoned(&g, &[rows], "loss"),
            poisoned(&g, &[rows], "hit"),
            poisoned(&g, &[rows * cols], "dz"),
        );
        g.run(&[
            &soft_xent_forward(&g, &probs, &loss, &hit, &tz, &tt, &rows_u, smoothing)?,
            &soft_xent_backward(&g, &dz, &probs, &tt, &rows_u, smoothing)?,
        ])?;
        let mut wp = vec![0.0; rows * cols];
        let shape = (rows, cols, valid);
        let per_row = soft_xent_forward_cpu(&mut wp, &z, &t, shape, smoothing);
        let mut wd = vec![0.0; rows * cols];
        soft_xent_backward_cpu(&mut wd, &wp, &t, shape, smoothing);
        let wl: Vec<f32> = per_row.iter().map(|r| r.0 as f32).collect();
        let wh: Vec<f32> = per_row.iter().map(|r| r.1 as f32).collect();
        let what = |p: &str| format!("soft cross-entropy {p} {rows}×{cols}, s {smoothing}");
        assert_close(&what("probs"), &probs.read(&g)?, &wp, 1e-6, 1e-5)?;
        assert_close(&what("loss"), &loss.read(&g)?, &wl, 1e-5, 1e-5)?;
        assert_close(&what("hits"), &hit.read(&g)?, &wh, 0.0, 0.0)?;
        assert_close(&what("dz"), &dz.read(&g)?, &wd, 1e-6, 1e-5)?;
    }
    // Keras: CategoricalCrossentropy(from_logits=True[, label_smoothing=0.2]) on two rows.
    let z = [2.0f32, -1.0, 0.3, -3.0, 0.5, 4.0];
    let t = [1.0f32, 0.0, 0.0, 0.2, 0.5, 0.3];
    for (smoothing, keras) in [(0.0, 1.694_827_9), (0.2, 1.886_494_8)] {
        let mut p = [0.0f32; 6];
        let per_row = soft_xent_forward_cpu(&mut p, &z, &t, (2, 3, 2), smoothing);
        let mean = ((per_row[0].0 + per_row[1].0) / 2.0) as f32;
        assert_close(
            &format!("Keras CCE s {smoothing}"),
            &[mean],
            &[keras],
            1e-6,
            1e-5,
        )?;
        let acc = ((per_row[0].1 + per_row[1].1) / 2.0) as f32;
        assert_close("Keras categorical accuracy", &[acc], &[0.5], 0.0, 0.0)?;
    }
    Ok(())
}

/// Accuracy and top-k accuracy in the metric totals: GPU against the CPU reference with
/// ties, and Keras 3.15's SparseTopKCategoricalAccuracy on a hand-made batch.
#[test]
fn top_k_accuracy_matches_cpu_and_keras() -> R {
    let g = gpu();
    let probs = [
        0.1f32, 0.5, 0.2, 0.2, //
        0.3, 0.3, 0.3, 0.1, //
        0.05, 0.05, 0.1, 0.8,
    ];
    let labels = [2u32, 2, 0];
    let loss = [0.0f32; 3];
    let (tp, tl, tloss) = (
        Tensor::from_slice(&g, &[3, 4], &probs, "p")?,
        Tensor::from_slice(&g, &[3], &labels, "labels")?,
        Tensor::from_slice(&g, &[3], &loss, "loss")?,
    );
    // Keras: k 1, 2, 3 → 1/3, 2/3, 1 (ties at the boundary count); accuracy (argmax,
    // first maximum) → 0.
    for (k, keras_hits) in [(0, 0usize), (1, 1), (2, 2), (3, 3)] {
        let mut rows = BatchRows::new(&g, 3, 4)?;
        rows.set_top_k(&g, k)?;
        let totals = Tensor::zeros(&g, &[2], "totals")?;
        g.run(&[&loss_metrics(&g, &totals, &tp, &tl, &tloss, &rows)?])?;
        let (_, hits) = loss_metrics_cpu(&probs, &labels, &loss, (4, k), 3);
        assert_eq!(hits, keras_hits, "top-{k} on the CPU");
        assert_close(
            &format!("top-{k}"),
            &totals.read(&g)?[1..],
            &[hits as f32],
            0.0,
            0.0,
        )?;
    }
    Ok(())
}

/// MeanIoU's confusion counts on the GPU (integer atomics) against the CPU reference, and
/// Keras 3.15's MeanIoU(num_classes=4) of labels (0, 0, 1, 1, 2) against predictions
/// (0, 1, 1, 1, 0): 1/3 (class 3, never seen, left out).
#[test]
fn confusion_and_mean_iou_match_cpu_and_keras() -> R {
    let g = gpu();
    let (rows, cols, valid) = (301, 5, 290);
    let probs = random_vec(rows * cols, 700);
    let labels = random_labels(rows, cols, 701);
    let br = BatchRows::new(&g, rows, cols)?;
    br.set_valid(&g, valid)?;
    let (tp, tl) = (
        Tensor::from_slice(&g, &[rows * cols], &probs, "p")?,
        Tensor::from_slice(&g, &[rows], &labels, "labels")?,
    );
    let counts = Tensor::zeros(&g, &[cols * cols], "confusion")?;
    let d = confusion(&g, &counts, &tp, &tl, &br)?;
    g.run(&[&d, &d])?; // twice: the counts add up
    let got: Vec<u32> = counts.read(&g)?;
    let mut want = vec![0u64; cols * cols];
    confusion_cpu(&mut want, &probs, &labels, cols, valid);
    let want: Vec<u32> = want.iter().map(|&c| 2 * c as u32).collect();
    assert_eq!(got, want);
    let mut keras = vec![0u64; 16];
    let onehot = |c: usize| (0..4).map(move |j| f32::from(u8::from(j == c)));
    let p: Vec<f32> = [0, 1, 1, 1, 0].into_iter().flat_map(onehot).collect();
    confusion_cpu(&mut keras, &p, &[0, 0, 1, 1, 2], 4, 5);
    assert!((mean_iou(&keras, 4) - 1.0 / 3.0).abs() < 1e-12);
    Ok(())
}

/// Bytes to floats: odd element counts (a partial last word), every byte value, the table
/// the host uses (b / 255 bit for bit), an output poisoned first and left alone past `n`;
/// and images read flipped and shifted as drawn, with every fill mode, on an odd shape.
#[test]
fn bytes_to_unit_matches_cpu() -> R {
    use wgcnn::data::augment::FillMode;
    use wgcnn::gpu::Uniform;
    use wgcnn::ops::bytes::{
        BytesParams, bytes_to_unit, bytes_to_unit_cpu, pack_bytes, unit_table,
    };
    let g = gpu();
    let table = unit_table();
    let t = Tensor::from_slice(&g, &[256], &table, "table")?;
    let no_draws = Tensor::zeros(&g, &[4], "draws")?;
    for n in [1usize, 3, 257, 1027] {
        let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
        let mut packed = Vec::new();
        pack_bytes(&bytes, &mut packed);
        let tp = Tensor::from_slice(&g, &[packed.len()], &packed, "packed")?;
        let out = poisoned(&g, &[n + 5], "out");
        let u = Uniform::new(&g, &BytesParams::new(n, [1, 1, n])?, "bytes");
        g.run(&[&bytes_to_unit(&g, &out, &tp, &t, &no_draws, &u, n)?])?;
        let got = out.read::<f32>(&g)?;
        let mut want = vec![0.0; n];
        bytes_to_unit_cpu(&mut want, &bytes, &table, None);
        assert_eq!(got[..n], want[..], "n = {n}");
        let by_hand: Vec<f32> = bytes.iter().map(|&b| f32::from(b) / 255.0).collect();
        assert_eq!(want, by_hand);
        assert!(got[n..].iter().all(|v| v.is_nan()), "past n untouched");
    }
    // 4 images of 5×7×3: no move, a flip, shifts past the edges both ways, both at once.
    let shape = [5, 7, 3];
    let per = 5 * 7 * 3;
    let draws: Vec<[i32; 4]> = vec![[0, 0, 0, 0], [1, 0, 0, 0], [0, -2, 3, 0], [1, 4, -6, 0]];
    let bytes: Vec<u8> = (0..4 * per).map(|i| (i * 53 + 7) as u8).collect();
    let mut packed = Vec::new();
    pack_bytes(&bytes, &mut packed);
    let tp = Tensor::from_slice(&g, &[packed.len()], &packed, "packed")?;
    let flat: Vec<i32> = draws.iter().flatten().copied().collect();
    let td = Tensor::from_slice(&g, &[flat.len()], &flat, "draws")?;
    for fill in [FillMode::Constant, FillMode::Nearest, FillMode::Reflect] {
        let out = poisoned(&g, &[4 * per], "out");
        let params = BytesParams::new(4 * per, shape)?.with_draws(Some(fill));
        let u = Uniform::new(&g, &params, "bytes");
        g.run(&[&bytes_to_unit(&g, &out, &tp, &t, &td, &u, 4 * per)?])?;
        let mut want = vec![0.0; 4 * per];
        bytes_to_unit_cpu(&mut want, &bytes, &table, Some((&draws, shape, fill)));
        assert_eq!(out.read::<f32>(&g)?, want, "{fill:?}");
        // Image 1 is image 1's bytes mirrored left-right.
        let at = |y: usize, x: usize, c: usize| per + (y * 7 + x) * 3 + c;
        assert_eq!(want[at(2, 1, 2)], table[usize::from(bytes[at(2, 5, 2)])]);
    }
    Ok(())
}

/// The per-channel affine map of Rescaling and Normalization, forward and input gradient,
/// on odd sizes (5 channels, 3 × 7 rows), outputs poisoned first.
#[test]
fn channel_affine_matches_cpu() -> R {
    use wgcnn::ops::channel_affine::{
        channel_affine, channel_affine_backward_cpu, channel_affine_cpu,
    };
    let g = gpu();
    let (c, n) = (5, 5 * 21);
    let (x, dy) = (random_vec(n, 41), random_vec(n, 42));
    let scale: Vec<f32> = random_vec(c, 43).iter().map(|v| v + 1.5).collect();
    let offset = random_vec(c, 44);
    let t = |v: &[f32], name: &str| Tensor::from_slice(&g, &[v.len()], v, name);
    let (tx, tdy, ts, to) = (
        t(&x, "x")?,
        t(&dy, "dy")?,
        t(&scale, "s")?,
        t(&offset, "o")?,
    );
    let zero = Tensor::zeros(&g, &[c], "zero")?;
    let (y, dx) = (poisoned(&g, &[n], "y"), poisoned(&g, &[n], "dx"));
    g.run(&[
        &channel_affine(&g, &y, &tx, (&ts, &to), c, false)?,
        &channel_affine(&g, &dx, &tdy, (&ts, &zero), c, true)?,
    ])?;
    let (mut wy, mut wdx) = (vec![0.0; n], vec![0.0; n]);
    channel_affine_cpu(&mut wy, &x, &scale, &offset);
    channel_affine_backward_cpu(&mut wdx, &dy, &scale);
    assert_close("channel_affine forward", &y.read(&g)?, &wy, 1e-6, 1e-6)?;
    assert_close("channel_affine backward", &dx.read(&g)?, &wdx, 1e-6, 1e-6)?;
    assert!(channel_affine(&g, &y, &tx, (&ts, &to), 4, false).is_err());
    Ok(())
}
