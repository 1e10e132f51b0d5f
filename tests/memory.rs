//! Regression test: repeating a dispatch must not grow the process's memory. With kernel
//! parameters in uniform buffers, lavapipe inlined their values into loop bounds and, for
//! some GEMM shapes (this one: a split-K dense forward), compiled a new shader variant on
//! every dispatch — ~10 MB and ~100 ms each — until a CIFAR training run was OOM-killed.
//! Parameters now live in read-only storage buffers. Own test binary: RSS is per process.

use wgcnn::Tensor;
use wgcnn::gpu::Gpu;
use wgcnn::ops::matmul::{MatmulShape, matmul};

fn rss_kib() -> u64 {
    wgcnn::testing::proc_status_kib("VmRSS")
}

#[test]
fn repeated_dispatches_do_not_grow_memory() -> anyhow::Result<()> {
    if rss_kib() == 0 {
        eprintln!("no /proc/self/status here: nothing to measure");
        return Ok(());
    }
    let g = Gpu::shared().expect("a GPU adapter (lavapipe in CI) is required");
    let (m, n, k) = (64, 32, 14_400); // cifar-pool's dense layer at batch 64
    let a = Tensor::from_slice(&g, &[m * k], &vec![0.5f32; m * k], "a")?;
    let b = Tensor::from_slice(&g, &[k * n], &vec![0.25f32; k * n], "b")?;
    let bias = Tensor::zeros(&g, &[n], "bias")?;
    let c = Tensor::zeros(&g, &[m * n], "c")?;
    let s = MatmulShape {
        m,
        n,
        k,
        bias: true,
        relu: true,
        ..Default::default()
    };
    let d = matmul(&g, &c, &a, &b, Some(&bias), &s)?;
    for _ in 0..5 {
        g.run(&[&d])?;
    }
    g.wait()?;
    let before = rss_kib();
    for i in 0..40 {
        g.run(&[&d])?;
        if i % 8 == 7 {
            g.wait()?;
        }
    }
    g.wait()?;
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 40 * 1024,
        "40 dispatches grew the process by {grown} KiB"
    );
    assert!((c.read::<f32>(&g)?[0] - 0.5 * 0.25 * k as f32).abs() < 1.0);
    Ok(())
}
