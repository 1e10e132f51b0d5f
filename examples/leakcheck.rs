use wgcnn::Tensor;
use wgcnn::gpu::{Dispatch, Gpu};
use wgcnn::ops::Padding;
use wgcnn::ops::conv2d::*;
use wgcnn::ops::pool2d::*;
fn rss() -> String {
    std::fs::read_to_string("/proc/self/status").unwrap().lines().find(|l| l.starts_with("VmRSS")).unwrap().to_string()
}
fn main() -> anyhow::Result<()> {
    let g = Gpu::shared()?;
    let b = 64;
    let cs = Conv2dShape { batch: b, in_h: 32, in_w: 32, in_c: 3, out_c: 64, k_h: 3, k_w: 3, stride_h: 1, stride_w: 1, padding: Padding::Valid };
    let ps = Pool2dShape { batch: b, in_h: 30, in_w: 30, c: 64, pool_h: 2, pool_w: 2, stride_h: 2, stride_w: 2, padding: Padding::Valid };
    let x = Tensor::zeros(&g, &[cs.input_len()], "x")?;
    let w = Tensor::zeros(&g, &[cs.weight_len()], "w")?;
    let bias = Tensor::zeros(&g, &[64], "b")?;
    let y = Tensor::zeros(&g, &[cs.output_len()], "y")?;
    let p = Tensor::zeros(&g, &[ps.output_len()], "p")?;
    let a = Tensor::zeros(&g, &[ps.output_len()], "a")?;
    let dx = Tensor::zeros(&g, &[ps.input_len()], "dx")?;
    let dw = Tensor::zeros(&g, &[cs.weight_len()], "dw")?;
    use wgcnn::ops::matmul::*;
    let ma = Tensor::zeros(&g, &[64 * 14400], "ma")?;
    if std::env::args().any(|a| a == "init") {
        ma.write(&g, &vec![0.5f32; 64 * 14400])?;
    }
    let mb = Tensor::zeros(&g, &[14400 * 32], "mb")?;
    let mc = Tensor::zeros(&g, &[64 * 32], "mc")?;
    let mbias = Tensor::zeros(&g, &[32], "mbias")?;
    let s1 = MatmulShape { m: 64, n: 32, k: 14400, bias: true, relu: true, ..Default::default() };
    let s2 = MatmulShape { m: 14400, n: 32, k: 64, trans_a: true, ..Default::default() };
    let s3 = MatmulShape { m: 64, n: 14400, k: 32, trans_b: true, ..Default::default() };
    let mdx = Tensor::zeros(&g, &[64 * 14400], "mdx")?;
    let ds: Vec<(&str, Dispatch)> = vec![
        ("dense fwd", matmul(&g, &mc, &ma, &mb, Some(&mbias), &s1)?),
        ("dense dW", matmul(&g, &mb, &ma, &mc, None, &s2)?),
        ("dense dX", matmul(&g, &mdx, &mc, &mb, None, &s3)?),
        ("fwd K=1440 (split)", matmul(&g, &Tensor::zeros(&g, &[64 * 32], "c")?, &Tensor::zeros(&g, &[64 * 1440], "a")?, &Tensor::zeros(&g, &[1440 * 32], "b")?, None, &MatmulShape { m: 64, n: 32, k: 1440, ..Default::default() })?),
        ("fwd M=2048 K=1440 (no split)", matmul(&g, &Tensor::zeros(&g, &[2048 * 64], "c")?, &Tensor::zeros(&g, &[2048 * 1440], "a")?, &Tensor::zeros(&g, &[1440 * 64], "b")?, None, &MatmulShape { m: 2048, n: 64, k: 1440, ..Default::default() })?),
        ("conv fwd (skip)", conv2d_forward(&g, &y, &x, &w, &bias, &cs, true)?),
        ("maxpool fwd", maxpool2d_forward(&g, &p, &a, &y, &ps)?),
        ("maxpool bwd", maxpool2d_backward(&g, &dx, &p, &a, &ps, false)?),
        ("conv dW", conv2d_backward_weight(&g, &dw, &dx, &x, &cs, false)?),
    ];
    for (name, d) in &ds {
        let before = rss();
        let t = std::time::Instant::now();
        for i in 0..40 {
            g.run(&[d])?;
            if i % 8 == 7 { g.wait()?; }
        }
        g.wait()?;
        println!("{name}: {before} -> {} in {:?}", rss(), t.elapsed());
    }
    Ok(())
}
