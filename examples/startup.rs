//! Start-up cost of the lecture models: what a user's first training step and first
//! `predict` wait for, and which pipelines (shader compiles) that time goes to.
//!
//! ```text
//! MESA_SHADER_CACHE_DISABLE=true cargo run --release --example startup
//! MESA_SHADER_CACHE_DISABLE=true cargo run --release --example startup -- mnist-conv --pipelines
//! ```
//!
//! Every measurement opens a device of its own, so nothing compiled by an earlier one is
//! reused in-process; set `MESA_SHADER_CACHE_DISABLE=true` (lavapipe) to keep Mesa's disk
//! cache out as well, or leave it set up to measure a warm cache. lavapipe compiles a
//! pipeline at its first dispatch, so "first step" is the wall time of `fit` over one batch
//! on a fresh model ("second step" the same again on that model: what the first paid
//! beyond compiles), and "first predict" that of `predict` over one batch on another.
//! `--pipelines` adds a table per model: every dispatch of one training step run alone on a
//! third fresh device, its first run minus its warm median = the compile of its pipeline
//! (paid by the first dispatch that uses it), and a note for any later dispatch of a
//! pipeline that compiled again. Progress goes to stderr, tables to stdout.

use anyhow::{Result, bail};
use clap::Parser;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use wgcnn::experiments::{Experiment, NAMES, experiment};
use wgcnn::gpu::{Gpu, Kernel, Variant};
use wgcnn::prelude::*;
use wgcnn::testing::{random_labels, random_vec};

#[derive(Parser)]
#[command(about = "First training step, first predict and per-pipeline compile cost")]
struct Args {
    /// Models to measure (default: all of them, in the lecture's order).
    models: Vec<String>,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Add the per-pipeline compile table of each model.
    #[arg(long)]
    pipelines: bool,
    /// Instead of models: compile every kernel in every family it has (or those whose
    /// `name:Family` contains one of the models' words) and time each alone.
    #[arg(long)]
    kernels: bool,
    /// Compile this WGSL file (entry `main`) the way --kernels does, for shader experiments.
    #[arg(long)]
    wgsl: Option<std::path::PathBuf>,
    /// Print the complete source of `kernel:Family` (e.g. matmul:Subgroup) and exit.
    #[arg(long)]
    dump: Option<String>,
}

fn fresh_model(exp: &Experiment) -> Result<(Model, Arc<Gpu>)> {
    let gpu = Arc::new(Gpu::new()?);
    let mut m = exp.model()?;
    m.set_device(Device::Gpu(gpu.clone())).set_seed(1);
    m.compile(exp.optimizer.clone(), exp.task.loss(), &exp.task.metrics())?;
    Ok((m, gpu))
}

fn main() -> Result<()> {
    let args = Args::parse();
    for name in args.models.iter().filter(|_| !args.kernels) {
        if !NAMES.contains(&name.as_str()) {
            bail!("unknown model '{name}'; choose from {}", NAMES.join(", "));
        }
    }
    if let Some(id) = &args.dump {
        for kernel in Kernel::ALL {
            for &variant in kernel.variants() {
                if format!("{}:{variant:?}", kernel.name()) == *id {
                    print!("{}", kernel.source(variant));
                    return Ok(());
                }
            }
        }
        bail!("no kernel:Family named {id}");
    }
    if let Some(path) = &args.wgsl {
        let gpu = Gpu::new()?;
        let source = std::fs::read_to_string(path)?;
        let t = Instant::now();
        let module = gpu
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: None,
                source: wgpu::ShaderSource::Wgsl(source.as_str().into()),
            });
        let pipeline = gpu
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        let create = t.elapsed().as_secs_f64();
        let (first, warm) = first_dispatch(&gpu, &pipeline, &source)?;
        println!(
            "{}: {} bytes, create {:.0} ms, first dispatch {:.0} ms, warm {:.2} ms",
            path.display(),
            source.len(),
            create * 1e3,
            first * 1e3,
            warm * 1e3
        );
        return Ok(());
    }
    if args.kernels {
        return kernels(&args.models);
    }
    let names: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|n| args.models.is_empty() || args.models.iter().any(|m| m == n))
        .collect();
    println!("**Adapter:** {}\n", Gpu::new()?.describe());
    println!(
        "Batch {}; each figure from a fresh device. Shader cache: {}.\n",
        args.batch,
        match std::env::var("MESA_SHADER_CACHE_DISABLE").as_deref() {
            Ok("true") | Ok("1") => "disabled (MESA_SHADER_CACHE_DISABLE)",
            _ => "Mesa's default (warm if an earlier run filled it)",
        }
    );
    println!(
        "| model | pipelines (train) | first train step s | second step s | first predict s |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mut tables = Vec::new();
    for name in names {
        let exp = experiment(name)?;
        let sample: usize = exp.input_shape().iter().product();
        let x: Vec<f32> = random_vec(args.batch * sample, 3)
            .iter()
            .map(|v| v.abs())
            .collect();
        let y = random_labels(args.batch, 10, 4);
        let cfg = FitConfig {
            epochs: 1,
            batch_size: args.batch,
            shuffle: false,
            verbose: false,
            ..Default::default()
        };
        eprintln!("{name}: first training step…");
        let (mut m, gpu) = fresh_model(&exp)?;
        let t = Instant::now();
        m.fit(&x, exp.task.targets(&x, &y), &cfg)?;
        let train_s = t.elapsed().as_secs_f64();
        let train_pipelines = gpu.pipelines().len();
        // The same step again on the same model: what the first one paid beyond compiles.
        let t = Instant::now();
        m.fit(&x, exp.task.targets(&x, &y), &cfg)?;
        let warm_s = t.elapsed().as_secs_f64();
        drop(m);
        eprintln!("{name}: first predict…");
        let (mut m, _) = fresh_model(&exp)?;
        let t = Instant::now();
        std::hint::black_box(m.predict(&x, args.batch)?);
        let predict_s = t.elapsed().as_secs_f64();
        drop(m);
        println!("| {name} | {train_pipelines} | {train_s:.2} | {warm_s:.2} | {predict_s:.2} |");
        if args.pipelines {
            eprintln!("{name}: per-pipeline profile…");
            let (mut m, _) = fresh_model(&exp)?;
            tables.push((name, m.profile_step(args.batch, 3)?));
        }
    }
    for (name, times) in tables {
        // The compile of a pipeline is paid by the first dispatch that uses it.
        let mut rows: Vec<(Kernel, Variant, f64, usize)> = Vec::new();
        let mut index: HashMap<(Kernel, Variant), usize> = HashMap::new();
        let mut recompiles = Vec::new();
        for t in &times {
            let key = (t.kernel, t.variant);
            match index.get(&key) {
                Some(&i) => {
                    rows[i].3 += 1;
                    // A later dispatch of a compiled pipeline should run warm; one that
                    // does not made the driver compile another variant of it.
                    if t.first_s - t.warm_s > 0.05 {
                        recompiles.push((t.kernel, t.variant, t.first_s - t.warm_s));
                    }
                }
                None => {
                    index.insert(key, rows.len());
                    rows.push((t.kernel, t.variant, (t.first_s - t.warm_s).max(0.0), 1));
                }
            }
        }
        let total: f64 = rows.iter().map(|r| r.2).sum();
        // Every dispatch's first run over its warm one: the compiles above plus what a
        // first run pays elsewhere (fresh memory touched, texture copies set up).
        let all: f64 = times.iter().map(|t| (t.first_s - t.warm_s).max(0.0)).sum();
        println!(
            "\n**{name}**: {} pipelines, {} dispatches; compile (first run − warm) {total:.2} s \
             (every dispatch's first run − warm: {all:.2} s)\n",
            rows.len(),
            times.len()
        );
        println!("| kernel | family | source bytes | dispatches | compile ms |");
        println!("|---|---|---:|---:|---:|");
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        for (kernel, variant, compile, uses) in rows {
            println!(
                "| {} | {variant:?} | {} | {uses} | {:.0} |",
                kernel.name(),
                kernel.source(variant).len(),
                compile * 1e3
            );
        }
        for (kernel, variant, extra) in recompiles {
            println!(
                "\nA later {}:{variant:?} dispatch took {:.0} ms more than warm: a second \
                 compile of the pipeline (a variant the driver keys on something else).",
                kernel.name(),
                extra * 1e3
            );
        }
    }
    Ok(())
}

/// Compiles each kernel × family on one device and times its creation and first dispatch
/// (one workgroup over zero-filled buffers: every kernel returns at once, the compile is
/// the whole cost).
fn kernels(filters: &[String]) -> Result<()> {
    let gpu = Gpu::new()?;
    println!("**Adapter:** {}\n", gpu.describe());
    println!("| kernel | family | source bytes | create ms | first dispatch ms | warm ms |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut total = 0.0;
    for kernel in Kernel::ALL {
        for &variant in kernel.variants() {
            let id = format!("{}:{variant:?}", kernel.name());
            if !filters.is_empty() && !filters.iter().any(|f| id.contains(f.as_str())) {
                continue;
            }
            let source = kernel.source(variant);
            let t = Instant::now();
            let pipeline = gpu.pipeline(kernel, variant)?;
            let create = t.elapsed().as_secs_f64();
            let (first, warm) = first_dispatch(&gpu, &pipeline, &source)?;
            total += create + first - warm;
            println!(
                "| {} | {variant:?} | {} | {:.1} | {:.0} | {:.2} |",
                kernel.name(),
                source.len(),
                create * 1e3,
                first * 1e3,
                warm * 1e3
            );
        }
    }
    println!("\nTotal compile (create + first dispatch − warm): {total:.1} s");
    Ok(())
}

/// (first, second) wall time of one workgroup of `pipeline` over zero-filled buffers, one
/// per `@binding` of `source`.
fn first_dispatch(gpu: &Gpu, pipeline: &wgpu::ComputePipeline, source: &str) -> Result<(f64, f64)> {
    // One zero-filled resource per `@binding(i)` line: a small texture where the shader
    // declares one, else a buffer.
    let mut declared: Vec<(u32, bool)> = source
        .lines()
        .filter_map(|l| {
            let n = l
                .split("@binding(")
                .nth(1)?
                .split(')')
                .next()?
                .parse()
                .ok()?;
            Some((n, l.contains("texture_2d")))
        })
        .collect();
    declared.sort();
    let is_texture: Vec<bool> = declared.iter().map(|&(_, t)| t).collect();
    let buffers: Vec<wgpu::Buffer> = (0..is_texture.len())
        .map(|_| gpu.storage_buffer(4096, "zeros"))
        .collect::<Result<_>>()?;
    let view = gpu
        .device
        .create_texture(&wgpu::TextureDescriptor {
            label: Some("zeros"),
            size: wgpu::Extent3d {
                width: 64,
                height: 4,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING,
            view_formats: &[],
        })
        .create_view(&Default::default());
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .zip(&is_texture)
        .enumerate()
        .map(|(i, (b, &t))| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: if t {
                wgpu::BindingResource::TextureView(&view)
            } else {
                b.as_entire_binding()
            },
        })
        .collect();
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let run = || -> Result<f64> {
        let t = Instant::now();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.wait()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let first = run()?;
    Ok((first, run()?))
}
