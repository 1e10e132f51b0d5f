//! Times single kernels at one shape (median of repeated runs): a quick loop for kernel work.
//! `cargo run --release --example opbench`
use std::time::Instant;
use wgcnn::Tensor;
use wgcnn::gpu::{Dispatch, Gpu};
use wgcnn::ops::Padding;
use wgcnn::ops::conv2d::*;
use wgcnn::ops::depthwise_conv2d::*;
use wgcnn::ops::matmul::*;
use wgcnn::ops::pool2d::*;
use wgcnn::ops::transpose::transpose;
use wgcnn::testing::random_vec;

fn time(g: &Gpu, d: &Dispatch, reps: usize) -> anyhow::Result<f64> {
    g.run(&[d])?;
    g.wait()?;
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            g.run(&[d]).unwrap();
            g.wait().unwrap();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    Ok(t[reps / 2])
}

fn main() -> anyhow::Result<()> {
    let g = Gpu::shared()?;
    println!("{}", g.describe());
    let batch: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let only_gemm = std::env::args().any(|a| a == "gemm");
    // The lecture's first layers, cifar-deep's 16×16×64 and ResNet-20's shapes (a 3×3
    // stage convolution, the strided one that opens a stage, its 1×1 projection).
    for (in_hw, in_c, out_c, k, stride, pad) in [
        (28, 1, 64, 3, 1, Padding::Valid),
        (32, 3, 64, 3, 1, Padding::Same),
        (16, 64, 64, 3, 1, Padding::Same),
        (32, 16, 16, 3, 1, Padding::Same),
        (32, 16, 32, 3, 2, Padding::Same),
        (32, 16, 32, 1, 2, Padding::Same),
    ] {
        let s = Conv2dShape {
            batch,
            in_h: in_hw,
            in_w: in_hw,
            in_c,
            out_c,
            k_h: k,
            k_w: k,
            stride_h: stride,
            stride_w: stride,
            dilation_h: 1,
            dilation_w: 1,
            padding: pad,
        };
        let x = Tensor::from_slice(&g, &[s.input_len()], &random_vec(s.input_len(), 1), "x")?;
        let w = Tensor::from_slice(&g, &[s.weight_len()], &random_vec(s.weight_len(), 2), "w")?;
        let b = Tensor::zeros(&g, &[out_c], "b")?;
        let y = Tensor::zeros(&g, &[s.output_len()], "y")?;
        let dy = Tensor::from_slice(&g, &[s.output_len()], &random_vec(s.output_len(), 3), "dy")?;
        let dx = Tensor::zeros(&g, &[s.input_len()], "dx")?;
        let dw = Tensor::zeros(&g, &[s.weight_len()], "dw")?;
        if only_gemm {
            break;
        }
        let f = s.flops() / 1e9;
        let tf = time(&g, &conv2d_forward(&g, &y, &x, &w, &b, &s, true)?, 9)?;
        let tx = time(&g, &conv2d_backward_input(&g, &dx, &dy, &w, &s, false)?, 9)?;
        let tw = time(&g, &conv2d_backward_weight(&g, &dw, &dy, &x, &s, false)?, 9)?;
        println!(
            "conv{k}x{k} s{stride} {in_hw}x{in_hw}x{in_c}->{out_c} b{batch}: fwd {:.2} ms ({:.1} GF/s)  dX {:.2} ms ({:.1})  dW {:.2} ms ({:.1})",
            tf * 1e3,
            f / tf,
            tx * 1e3,
            f / tx,
            tw * 1e3,
            f / tw
        );
    }
    // Depthwise 3×3 convolutions (MobileNet's blocks; 16×16×64 is the full conv's shape
    // above, so the two rows compare per FLOP and per layer).
    // Then grouped 3×3 convolutions (ResNeXt-style) on the full conv's 16×16×64 → 64:
    // 4 groups of 16 and 16 groups of 4 channels.
    for (in_hw, c, mult, stride, group_in) in [
        (16, 64, 1, 1, 1),
        (14, 64, 1, 1, 1),
        (28, 16, 1, 2, 1),
        (16, 32, 2, 1, 1),
        (16, 64, 16, 1, 16),
        (16, 64, 4, 1, 4),
    ] {
        if only_gemm {
            break;
        }
        let s = DepthwiseShape {
            batch,
            in_h: in_hw,
            in_w: in_hw,
            in_c: c,
            mult,
            group_in,
            k_h: 3,
            k_w: 3,
            stride_h: stride,
            stride_w: stride,
            dilation_h: 1,
            dilation_w: 1,
            padding: Padding::Same,
        };
        let t = |n: usize, seed: u64, name: &str| {
            Tensor::from_slice(&g, &[n], &random_vec(n, seed), name)
        };
        let (x, w, b) = (
            t(s.input_len(), 1, "x")?,
            t(s.weight_len(), 2, "w")?,
            t(s.out_c(), 3, "b")?,
        );
        let (y, dy) = (t(s.output_len(), 4, "y")?, t(s.output_len(), 5, "dy")?);
        let (dx, dw) = (t(s.input_len(), 6, "dx")?, t(s.weight_len(), 7, "dw")?);
        let f = s.flops() / 1e9;
        let tf = time(
            &g,
            &depthwise_conv2d_forward(&g, &y, &x, &w, &b, &s, true)?,
            9,
        )?;
        let tx = time(
            &g,
            &depthwise_conv2d_backward_input(&g, &dx, &dy, &w, &s, false)?,
            9,
        )?;
        let tw = time(
            &g,
            &depthwise_conv2d_backward_weight(&g, &dw, &dy, &x, &s, false)?,
            9,
        )?;
        let kind = if group_in == 1 {
            format!("depthwise {in_hw}x{in_hw}x{c} m{mult}")
        } else {
            let groups = s.groups();
            format!("grouped {in_hw}x{in_hw}x{c}->{} g{groups}", s.out_c())
        };
        println!(
            "{kind} s{stride} b{batch}: fwd {:.2} ms ({:.1} GF/s)  dX {:.2} ms ({:.1})  dW {:.2} ms ({:.1})",
            tf * 1e3,
            f / tf,
            tx * 1e3,
            f / tx,
            tw * 1e3,
            f / tw
        );
    }
    for (hw, c) in [(26, 64), (32, 64)] {
        let s = Pool2dShape {
            batch,
            in_h: hw,
            in_w: hw,
            c,
            pool_h: 2,
            pool_w: 2,
            stride_h: 2,
            stride_w: 2,
            padding: Padding::Valid,
        };
        let x = Tensor::from_slice(&g, &[s.input_len()], &random_vec(s.input_len(), 6), "x")?;
        let y = Tensor::zeros(&g, &[s.output_len()], "y")?;
        let arg = Tensor::zeros(&g, &[s.output_len()], "argmax")?;
        let dx = Tensor::zeros(&g, &[s.input_len()], "dx")?;
        let tf = time(&g, &maxpool2d_forward(&g, &y, &arg, &x, &s)?, 9)?;
        let tb = time(&g, &maxpool2d_backward(&g, &dx, &y, &arg, &s, false)?, 9)?;
        println!(
            "maxpool {hw}x{hw}x{c} b{batch}: fwd {:.2} ms  bwd {:.2} ms",
            tf * 1e3,
            tb * 1e3
        );
    }
    // Transposes the graph records: a conv kernel [3·3, ci, co] → [3·3, co, ci], dense
    // inputs for dW (mnist-conv, cifar-deep), a dense kernel with 10 units.
    for (b, rows, cols) in [(9, 64, 64), (1, 32, 43264), (1, 32, 4096), (1, 43264, 10)] {
        let n = b * rows * cols;
        let x = Tensor::from_slice(&g, &[n], &random_vec(n, 7), "x")?;
        let y = Tensor::zeros(&g, &[n], "y")?;
        let t = time(&g, &transpose(&g, &y, &x, b, rows, cols)?, 9)?;
        println!("transpose {b}x{rows}x{cols}: {:.3} ms", t * 1e3);
    }
    // Dense passes as the graph records them: forward A·W, dX = dY·Wᵀ, dW = Xᵀ·dY.
    for (m, n, k, trans_a, trans_b, what) in [
        (1024, 1024, 1024, false, false, "gemm"),
        (batch, 10, 43264, false, false, "dense fwd"),
        (batch, 43264, 10, false, true, "dense dX"),
        (43264, 10, batch, true, false, "dense dW"),
        (batch, 128, 4096, false, false, "dense fwd"),
        (batch, 4096, 128, false, true, "dense dX"),
        (4096, 128, batch, true, false, "dense dW"),
        (1024, 1024, 1024, false, false, "gemm"),
    ] {
        let a = Tensor::from_slice(&g, &[m * k], &random_vec(m * k, 4), "a")?;
        let bt = Tensor::from_slice(&g, &[k * n], &random_vec(k * n, 5), "b")?;
        let c = Tensor::zeros(&g, &[m * n], "c")?;
        let s = MatmulShape {
            m,
            n,
            k,
            trans_a,
            trans_b,
            ..Default::default()
        };
        let t = time(&g, &matmul(&g, &c, &a, &bt, None, &s)?, 7)?;
        println!(
            "{what} {m}x{n}x{k}: {:.2} ms ({:.1} GF/s)",
            t * 1e3,
            s.flops() / 1e9 / t
        );
        if only_gemm {
            break;
        }
    }
    Ok(())
}
