//! Kernel benchmarks: every GEMM-shaped pass and max pooling at the shapes of the lecture's
//! models, each GPU launcher next to its CPU reference in one criterion group.
//!
//! ```text
//! cargo bench --bench ops                                   # everything (several minutes)
//! cargo bench --bench ops -- --warm-up-time 1 --measurement-time 2 conv2d_fwd
//! cargo bench --bench ops -- '/gpu$'                        # GPU side only
//! WGCNN_BENCH_CPU=0 cargo bench --bench ops                 # same, by environment
//! ```
//!
//! Groups are named `op/shape/bBATCH` with the functions `gpu` and `cpu`:
//! - `conv2d_fwd`, `conv2d_dx`, `conv2d_dw`: 3×3 convolutions 28×28×1→64 and 32×32×3→64
//!   ('valid'), 16×16×64→64 ('same'), batch 32 and 128. The CPU reference computes dX, dW and
//!   db in one pass (`conv2d_backward_cpu`), so it sits in `conv2d_bwd`, against the three GPU
//!   dispatches (dX, dW, db) recorded together.
//! - `dense_fwd` (`A·W + b`), `dense_dx` (`dY·Wᵀ`), `dense_dw` (`Xᵀ·dY`) at batch × in × out
//!   = (32|128) × 4096 × 128 and (32|128) × 43264 × 10, as `src/model/graph.rs` calls
//!   `ops::matmul::matmul`.
//! - `gemm/1024x1024x1024`: square `ops::matmul::matmul`.
//! - `maxpool_fwd`, `maxpool_bwd`: 2×2 pooling, stride 2, of 26×26×64 and 32×32×64.
//!
//! **Units.** GEMM-shaped groups declare `Throughput::Elements(FLOP per iteration)`, so
//! criterion's `elem/s` column reads as **FLOP/s** (`Gelem/s` = GFLOP/s). FLOPs are
//! 2·M·N·K per pass: conv = 2·B·OH·OW·CO·KH·KW·CI (forward, dX and dW cost the same),
//! dense = 2·B·in·out, `conv2d_bwd` = dX + dW (db's adds are not counted). Pooling groups
//! declare `Throughput::Bytes` (forward: input read + output and argmax written; backward:
//! output gradient and argmax read + input gradient written).
//!
//! **GPU timing.** `iter_custom`: N iterations are recorded as N repetitions of the
//! dispatches, up to 256 dispatches per submission (one compute pass each, like a training
//! step), and the clock stops after `Gpu::wait`, so the device's work is inside the timed
//! region. Before that each kernel has run once: the first dispatch (pipeline creation plus
//! lavapipe's shader compile, 2–420 ms, less when Mesa's disk cache has it) is printed to
//! stderr once per kernel (`[first dispatch] …`) and kept out of the measurement.
//!
//! **CPU references** are naive f64 loops: they run 10 samples of one iteration each (flat
//! sampling). A CPU reference whose single iteration takes longer than 2 s
//! (`WGCNN_BENCH_CPU_LIMIT_S`) is skipped with a `[cpu skipped]` line on stderr; batch-128
//! shapes are first estimated as 4× their batch-32 time, and the 1024³ GEMM as 8× a 512³
//! one, so a hopeless case is skipped without running it.

mod common;

use common::{
    CpuGate, configure_cpu, cpu_enabled, cpu_gate, cpu_limit_s, first_dispatch, listing,
    report_skip, selected, time_dispatches,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wgcnn::Tensor;
use wgcnn::gpu::{Dispatch, Gpu};
use wgcnn::ops::Padding;
use wgcnn::ops::bias::bias_backward;
use wgcnn::ops::conv2d::{
    Conv2dShape, conv2d_backward_cpu, conv2d_backward_input, conv2d_backward_weight,
    conv2d_forward, conv2d_forward_cpu,
};
use wgcnn::ops::matmul::{MatmulShape, dense_forward_cpu, matmul, matmul_cpu};
use wgcnn::ops::pool2d::{
    Pool2dShape, maxpool2d_backward, maxpool2d_backward_cpu, maxpool2d_forward,
    maxpool2d_forward_cpu,
};
use wgcnn::testing::random_vec;

const BATCHES: [usize; 2] = [32, 128];
/// Seconds one CPU-reference iteration may take.
const CPU_LIMIT_S: f64 = 2.0;

/// The GPU half of a benchmark: tensors first (uploaded before any timing), then the
/// dispatches over them (their creation is part of the first-dispatch cost).
type Tensors = Box<dyn FnOnce(&Gpu) -> Vec<Tensor>>;
type Dispatches = Box<dyn FnOnce(&Gpu, &[Tensor]) -> anyhow::Result<Vec<Dispatch>>>;
/// The CPU half: builds its buffers and returns one iteration.
type CpuIter = Box<dyn FnOnce() -> Box<dyn FnMut()>>;

struct Case {
    group: String,
    throughput: Throughput,
    tensors: Tensors,
    dispatches: Dispatches,
    cpu: Option<CpuIter>,
    /// Seconds per CPU iteration estimated from a smaller problem (skip without running
    /// when over the limit).
    cpu_estimate: Option<f64>,
}

struct Ctx {
    gpu: Arc<Gpu>,
    cpu: bool,
    limit: f64,
    /// Probe time of each CPU reference that ran, by group (for estimates).
    cpu_secs: HashMap<String, f64>,
}

impl Ctx {
    fn new() -> Ctx {
        let gpu = Gpu::shared().expect("a GPU adapter (lavapipe on CPU-only machines)");
        let cpu = cpu_enabled();
        let limit = cpu_limit_s(CPU_LIMIT_S);
        static BANNER: std::sync::Once = std::sync::Once::new();
        if !listing() {
            BANNER.call_once(|| {
                eprintln!("adapter: {}", gpu.describe());
                eprintln!(
                    "units: GEMM-shaped groups report elem/s = FLOP/s; pooling reports bytes/s. \
                     CPU references: {}",
                    if cpu {
                        format!("on, skipped above {limit} s per iteration")
                    } else {
                        "off (WGCNN_BENCH_CPU=0)".into()
                    }
                );
            });
        }
        Ctx {
            gpu,
            cpu,
            limit,
            cpu_secs: HashMap::new(),
        }
    }

    /// Registers one group: the GPU launcher and, if any, the CPU reference.
    fn run(&mut self, c: &mut Criterion, case: Case) {
        let Case {
            group: name,
            throughput,
            tensors,
            dispatches,
            cpu,
            cpu_estimate,
        } = case;
        let mut group = c.benchmark_group(&name);
        group.throughput(throughput);
        if listing() {
            group.bench_function("gpu", |b| b.iter(|| ()));
            if cpu.is_some() && self.cpu {
                group.bench_function("cpu", |b| b.iter(|| ()));
            }
            group.finish();
            return;
        }

        let gpu = &*self.gpu;
        if selected(&format!("{name}/gpu")) {
            let ts = tensors(gpu);
            gpu.queue.submit(std::iter::empty()); // flush the uploads before timing
            gpu.wait().expect("GPU wait");
            let t = Instant::now();
            let ds = dispatches(gpu, &ts).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let setup = t.elapsed();
            let refs: Vec<&Dispatch> = ds.iter().collect();
            first_dispatch(gpu, &name, setup, &refs);
            group.bench_function("gpu", |b| {
                b.iter_custom(|iters| time_dispatches(gpu, &refs, iters))
            });
        }

        if let Some(make) = cpu.filter(|_| self.cpu) {
            let id = format!("{name}/cpu");
            if selected(&id) {
                let mut once = make();
                match cpu_gate(self.limit, cpu_estimate, &mut *once) {
                    CpuGate::Run(took) => {
                        self.cpu_secs.insert(name.clone(), took.as_secs_f64());
                        configure_cpu(&mut group, took);
                        group.bench_function("cpu", |b| b.iter(&mut once));
                    }
                    CpuGate::Skip(why, took) => {
                        if let Some(took) = took {
                            self.cpu_secs.insert(name.clone(), took.as_secs_f64());
                        }
                        report_skip(&id, &why)
                    }
                }
            }
        }
        group.finish();
    }

    /// 4× the batch-32 time of the same group, when that one ran (CPU references are
    /// linear in the batch).
    fn estimate_from_b32(&self, name: &str, batch: usize) -> Option<f64> {
        let base = name.strip_suffix(&format!("/b{batch}"))?;
        let t = self.cpu_secs.get(&format!("{base}/b32"))?;
        Some(t * batch as f64 / 32.0)
    }
}

fn upload(gpu: &Gpu, shape: &[usize], seed: u64, name: &str) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_slice(gpu, shape, &random_vec(n, seed), name).expect("upload")
}

fn zeros(gpu: &Gpu, shape: &[usize], name: &str) -> Tensor {
    Tensor::zeros(gpu, shape, name).expect("allocate")
}

fn conv_shapes(batch: usize) -> [(&'static str, Conv2dShape); 3] {
    let s = |in_h, in_w, in_c, padding| Conv2dShape {
        batch,
        in_h,
        in_w,
        in_c,
        out_c: 64,
        k_h: 3,
        k_w: 3,
        stride_h: 1,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 1,
        padding,
    };
    [
        ("28x28x1-64-valid", s(28, 28, 1, Padding::Valid)),
        ("32x32x3-64-valid", s(32, 32, 3, Padding::Valid)),
        ("16x16x64-64-same", s(16, 16, 64, Padding::Same)),
    ]
}

fn conv_benches(c: &mut Criterion) {
    let mut ctx = Ctx::new();
    for (label, _) in conv_shapes(1) {
        for batch in BATCHES {
            let s = conv_shapes(batch)
                .into_iter()
                .find(|(l, _)| *l == label)
                .expect("shape")
                .1;
            let flops = s.flops() as u64;
            let (x_len, y_len, w_len) = (s.input_len(), s.output_len(), s.weight_len());
            let xs = [batch, s.in_h, s.in_w, s.in_c];
            let ys = [batch, s.out_h(), s.out_w(), s.out_c];
            let ws = [s.k_h, s.k_w, s.in_c, s.out_c];
            let bs = [s.out_c];

            // Forward: [x, w, b, y].
            let name = format!("conv2d_fwd/{label}/b{batch}");
            let cpu_estimate = ctx.estimate_from_b32(&name, batch);
            ctx.run(
                c,
                Case {
                    group: name,
                    throughput: Throughput::Elements(flops),
                    tensors: Box::new(move |g| {
                        vec![
                            upload(g, &xs, 1, "x"),
                            upload(g, &ws, 2, "w"),
                            upload(g, &bs, 3, "b"),
                            zeros(g, &ys, "y"),
                        ]
                    }),
                    dispatches: Box::new(move |g, t| {
                        Ok(vec![conv2d_forward(
                            g, &t[3], &t[0], &t[1], &t[2], &s, true,
                        )?])
                    }),
                    cpu: Some(Box::new(move || {
                        let (x, w, b) = (
                            random_vec(x_len, 1),
                            random_vec(w_len, 2),
                            random_vec(64, 3),
                        );
                        let mut y = vec![0f32; y_len];
                        Box::new(move || {
                            conv2d_forward_cpu(&mut y, &x, &w, &b, &s, true);
                            black_box(&mut y);
                        })
                    })),
                    cpu_estimate,
                },
            );

            // dX: [dy, w, dx]. No CPU reference of its own (see conv2d_bwd).
            ctx.run(
                c,
                Case {
                    group: format!("conv2d_dx/{label}/b{batch}"),
                    throughput: Throughput::Elements(flops),
                    tensors: Box::new(move |g| {
                        vec![
                            upload(g, &ys, 4, "dy"),
                            upload(g, &ws, 2, "w"),
                            zeros(g, &xs, "dx"),
                        ]
                    }),
                    dispatches: Box::new(move |g, t| {
                        Ok(vec![conv2d_backward_input(
                            g, &t[2], &t[0], &t[1], &s, false,
                        )?])
                    }),
                    cpu: None,
                    cpu_estimate: None,
                },
            );

            // dW: [dy, x, dw].
            ctx.run(
                c,
                Case {
                    group: format!("conv2d_dw/{label}/b{batch}"),
                    throughput: Throughput::Elements(flops),
                    tensors: Box::new(move |g| {
                        vec![
                            upload(g, &ys, 4, "dy"),
                            upload(g, &xs, 1, "x"),
                            zeros(g, &ws, "dw"),
                        ]
                    }),
                    dispatches: Box::new(move |g, t| {
                        Ok(vec![conv2d_backward_weight(
                            g, &t[2], &t[0], &t[1], &s, false,
                        )?])
                    }),
                    cpu: None,
                    cpu_estimate: None,
                },
            );

            // dX + dW + db together, against the CPU reference computing the same three:
            // [dy, x, w, dx, dw, db].
            let name = format!("conv2d_bwd/{label}/b{batch}");
            let cpu_estimate = ctx.estimate_from_b32(&name, batch);
            ctx.run(
                c,
                Case {
                    group: name,
                    throughput: Throughput::Elements(2 * flops),
                    tensors: Box::new(move |g| {
                        vec![
                            upload(g, &ys, 4, "dy"),
                            upload(g, &xs, 1, "x"),
                            upload(g, &ws, 2, "w"),
                            zeros(g, &xs, "dx"),
                            zeros(g, &ws, "dw"),
                            zeros(g, &bs, "db"),
                        ]
                    }),
                    dispatches: Box::new(move |g, t| {
                        Ok(vec![
                            conv2d_backward_input(g, &t[3], &t[0], &t[2], &s, false)?,
                            conv2d_backward_weight(g, &t[4], &t[0], &t[1], &s, false)?,
                            bias_backward(g, &t[5], &t[0], y_len / s.out_c, s.out_c, false)?,
                        ])
                    }),
                    cpu: Some(Box::new(move || {
                        let (dy, x, w) = (
                            random_vec(y_len, 4),
                            random_vec(x_len, 1),
                            random_vec(w_len, 2),
                        );
                        let (mut dx, mut dw, mut db) =
                            (vec![0f32; x_len], vec![0f32; w_len], vec![0f32; 64]);
                        Box::new(move || {
                            conv2d_backward_cpu(Some(&mut dx), &mut dw, &mut db, &dy, &x, &w, &s);
                            black_box((&mut dx, &mut dw, &mut db));
                        })
                    })),
                    cpu_estimate,
                },
            );
        }
    }
}

/// One dense pass as `src/model/graph.rs` records it, with its CPU reference.
#[derive(Clone, Copy)]
enum DensePass {
    /// `y[B, out] = x[B, in]·W[in, out] + b`.
    Forward,
    /// `dx[B, in] = dy[B, out]·W[in, out]ᵀ`.
    InputGrad,
    /// `dW[in, out] = x[B, in]ᵀ·dy[B, out]`.
    WeightGrad,
}

fn dense_case(ctx: &Ctx, pass: DensePass, batch: usize, n_in: usize, n_out: usize) -> Case {
    let (op, shape, a_shape, b_shape) = match pass {
        DensePass::Forward => (
            "dense_fwd",
            MatmulShape {
                m: batch,
                n: n_out,
                k: n_in,
                bias: true,
                ..Default::default()
            },
            [batch, n_in],
            [n_in, n_out],
        ),
        DensePass::InputGrad => (
            "dense_dx",
            MatmulShape {
                m: batch,
                n: n_in,
                k: n_out,
                trans_b: true,
                ..Default::default()
            },
            [batch, n_out],
            [n_in, n_out],
        ),
        DensePass::WeightGrad => (
            "dense_dw",
            MatmulShape {
                m: n_in,
                n: n_out,
                k: batch,
                trans_a: true,
                ..Default::default()
            },
            [batch, n_in],
            [batch, n_out],
        ),
    };
    let name = format!("{op}/Bx{n_in}x{n_out}/b{batch}");
    let cpu_estimate = ctx.estimate_from_b32(&name, batch);
    let c_shape = [shape.m, shape.n];
    let (a_len, b_len, c_len) = (
        batch * a_shape[1],
        b_shape[0] * b_shape[1],
        shape.m * shape.n,
    );
    Case {
        group: name,
        throughput: Throughput::Elements(shape.flops() as u64),
        tensors: Box::new(move |g| {
            vec![
                upload(g, &a_shape, 5, "a"),
                upload(g, &b_shape, 6, "b"),
                upload(g, &[n_out], 7, "bias"),
                zeros(g, &c_shape, "c"),
            ]
        }),
        dispatches: Box::new(move |g, t| {
            let bias = shape.bias.then_some(&t[2]);
            Ok(vec![matmul(g, &t[3], &t[0], &t[1], bias, &shape)?])
        }),
        cpu: Some(Box::new(move || {
            let (a, b, bias) = (
                random_vec(a_len, 5),
                random_vec(b_len, 6),
                random_vec(n_out, 7),
            );
            let mut c = vec![0f32; c_len];
            Box::new(move || {
                match pass {
                    DensePass::Forward => {
                        dense_forward_cpu(&mut c, &a, &b, &bias, batch, n_in, n_out)
                    }
                    _ => matmul_cpu(&mut c, &a, &b, None, &shape),
                }
                black_box(&mut c);
            })
        })),
        cpu_estimate,
    }
}

fn dense_benches(c: &mut Criterion) {
    let mut ctx = Ctx::new();
    for (n_in, n_out) in [(4096, 128), (43264, 10)] {
        for pass in [
            DensePass::Forward,
            DensePass::InputGrad,
            DensePass::WeightGrad,
        ] {
            for batch in BATCHES {
                let case = dense_case(&ctx, pass, batch, n_in, n_out);
                ctx.run(c, case);
            }
        }
    }
}

fn gemm_bench(c: &mut Criterion) {
    let mut ctx = Ctx::new();
    const N: usize = 1024;
    let shape = MatmulShape {
        m: N,
        n: N,
        k: N,
        ..Default::default()
    };
    let name = "gemm/1024x1024x1024".to_string();
    // The 1024³ reference is estimated from a 512³ one (8× the work) before it runs.
    let cpu_estimate = (ctx.cpu && !listing() && selected(&format!("{name}/cpu"))).then(|| {
        const P: usize = 512;
        let s = MatmulShape {
            m: P,
            n: P,
            k: P,
            ..Default::default()
        };
        let (a, b) = (random_vec(P * P, 8), random_vec(P * P, 9));
        let mut out = vec![0f32; P * P];
        let t = Instant::now();
        matmul_cpu(&mut out, &a, &b, None, &s);
        black_box(&mut out);
        t.elapsed().as_secs_f64() * 8.0
    });
    ctx.run(
        c,
        Case {
            group: name,
            throughput: Throughput::Elements(shape.flops() as u64),
            tensors: Box::new(|g| {
                vec![
                    upload(g, &[N, N], 8, "a"),
                    upload(g, &[N, N], 9, "b"),
                    zeros(g, &[N, N], "c"),
                ]
            }),
            dispatches: Box::new(move |g, t| {
                Ok(vec![matmul(g, &t[2], &t[0], &t[1], None, &shape)?])
            }),
            cpu: Some(Box::new(move || {
                let (a, b) = (random_vec(N * N, 8), random_vec(N * N, 9));
                let mut out = vec![0f32; N * N];
                Box::new(move || {
                    matmul_cpu(&mut out, &a, &b, None, &shape);
                    black_box(&mut out);
                })
            })),
            cpu_estimate,
        },
    );
}

fn pool_benches(c: &mut Criterion) {
    let mut ctx = Ctx::new();
    for (label, hw) in [("26x26x64", 26), ("32x32x64", 32)] {
        for batch in BATCHES {
            let s = Pool2dShape {
                batch,
                in_h: hw,
                in_w: hw,
                c: 64,
                pool_h: 2,
                pool_w: 2,
                stride_h: 2,
                stride_w: 2,
                padding: Padding::Valid,
            };
            let (in_len, out_len) = (s.input_len(), s.output_len());
            let xs = [batch, hw, hw, 64];
            let ys = [batch, s.out_h(), s.out_w(), 64];
            let bytes = 4 * in_len as u64 + 8 * out_len as u64;

            // Forward: [x, y, argmax].
            let name = format!("maxpool_fwd/{label}/b{batch}");
            let cpu_estimate = ctx.estimate_from_b32(&name, batch);
            ctx.run(
                c,
                Case {
                    group: name,
                    throughput: Throughput::Bytes(bytes),
                    tensors: Box::new(move |g| {
                        vec![
                            upload(g, &xs, 10, "x"),
                            zeros(g, &ys, "y"),
                            zeros(g, &ys, "argmax"),
                        ]
                    }),
                    dispatches: Box::new(move |g, t| {
                        Ok(vec![maxpool2d_forward(g, &t[1], &t[2], &t[0], &s)?])
                    }),
                    cpu: Some(Box::new(move || {
                        let x = random_vec(in_len, 10);
                        let (mut y, mut am) = (vec![0f32; out_len], vec![0u32; out_len]);
                        Box::new(move || {
                            maxpool2d_forward_cpu(&mut y, &mut am, &x, &s);
                            black_box((&mut y, &mut am));
                        })
                    })),
                    cpu_estimate,
                },
            );

            // Backward (gather; overwrites dx): [dy, argmax, dx, x, y]; the argmax comes
            // from one forward pass during set-up.
            let name = format!("maxpool_bwd/{label}/b{batch}");
            let cpu_estimate = ctx.estimate_from_b32(&name, batch);
            ctx.run(
                c,
                Case {
                    group: name,
                    throughput: Throughput::Bytes(bytes),
                    tensors: Box::new(move |g| {
                        let t = vec![
                            upload(g, &ys, 11, "dy"),
                            zeros(g, &ys, "argmax"),
                            zeros(g, &xs, "dx"),
                            upload(g, &xs, 10, "x"),
                            zeros(g, &ys, "y"),
                        ];
                        let fwd = maxpool2d_forward(g, &t[4], &t[1], &t[3], &s).expect("forward");
                        g.run(&[&fwd]).expect("forward");
                        g.wait().expect("GPU wait");
                        t
                    }),
                    dispatches: Box::new(move |g, t| {
                        Ok(vec![maxpool2d_backward(g, &t[2], &t[0], &t[1], &s, false)?])
                    }),
                    // The reference accumulates at the maxima only; zeroing dx first makes
                    // it overwrite every element, as the GPU kernel does.
                    cpu: Some(Box::new(move || {
                        let (x, dy) = (random_vec(in_len, 10), random_vec(out_len, 11));
                        let (mut y, mut am) = (vec![0f32; out_len], vec![0u32; out_len]);
                        maxpool2d_forward_cpu(&mut y, &mut am, &x, &s);
                        let mut dx = vec![0f32; in_len];
                        Box::new(move || {
                            dx.fill(0.0);
                            maxpool2d_backward_cpu(&mut dx, &dy, &am, &s);
                            black_box(&mut dx);
                        })
                    })),
                    cpu_estimate,
                },
            );
        }
    }
}

fn config() -> Criterion {
    // Short defaults (the command line overrides them): GPU kernels take 0.05–50 ms.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = conv_benches, dense_benches, gemm_bench, pool_benches
}
criterion_main!(benches);
