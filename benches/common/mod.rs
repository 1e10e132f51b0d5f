//! Helpers shared by `benches/ops.rs` and `benches/train.rs`: which benchmarks the command
//! line selects (so that skipped ones cost no set-up or probing), timing GPU dispatches with
//! the device wait inside the timed region, first-dispatch (shader compile) reports, and the
//! gate that keeps slow CPU references out.
//!
//! Environment:
//! - `WGCNN_BENCH_CPU=0` skips every CPU reference.
//! - `WGCNN_BENCH_CPU_LIMIT_S=<seconds>` overrides the per-iteration limit above which a
//!   CPU reference is skipped (ops: 2 s, training: 5 s).

// Each bench uses a subset of these helpers.
#![allow(dead_code)]

use criterion::{BenchmarkGroup, SamplingMode, measurement::WallTime};
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use wgcnn::gpu::{Dispatch, Gpu};

/// Criterion options that take a value (so that the value is not mistaken for the filter).
const VALUE_OPTIONS: [&str; 17] = [
    "-c",
    "--color",
    "-s",
    "--save-baseline",
    "-b",
    "--baseline",
    "--baseline-lenient",
    "--format",
    "--profile-time",
    "--load-baseline",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
];
const MORE_VALUE_OPTIONS: [&str; 2] = ["--plotting-backend", "--output-format"];

/// What the command line asks for, read the way criterion reads it.
struct Cli {
    filter: Option<String>,
    exact: bool,
    /// `--list`: criterion only prints names; nothing should be set up or probed.
    list: bool,
    /// `--ignored`: criterion runs nothing.
    ignored: bool,
}

fn cli() -> &'static Cli {
    static CLI: OnceLock<Cli> = OnceLock::new();
    CLI.get_or_init(|| {
        let mut cli = Cli {
            filter: None,
            exact: false,
            list: false,
            ignored: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--exact" => cli.exact = true,
                "--list" => cli.list = true,
                "--ignored" => cli.ignored = true,
                _ if VALUE_OPTIONS.contains(&a.as_str())
                    || MORE_VALUE_OPTIONS.contains(&a.as_str()) =>
                {
                    args.next();
                }
                _ if a.starts_with('-') => {}
                _ if cli.filter.is_none() => cli.filter = Some(a),
                _ => {}
            }
        }
        cli
    })
}

/// Whether criterion will run the benchmark `id` (`group/function`). Plain filters are
/// matched as criterion does (substring, `^`/`$` anchors, `|` alternatives); a filter using
/// other regex syntax is taken to select everything (the benchmark is then prepared and
/// criterion still decides what runs).
pub fn selected(id: &str) -> bool {
    let cli = cli();
    if cli.ignored {
        return false;
    }
    let Some(filter) = &cli.filter else {
        return true;
    };
    if cli.exact {
        return id == filter;
    }
    filter.split('|').any(|alt| {
        let (start, rest) = match alt.strip_prefix('^') {
            Some(r) => (true, r),
            None => (false, alt),
        };
        let (end, core) = match rest.strip_suffix('$') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if core.contains(|c: char| "\\.+*?()[]{}^$".contains(c)) {
            return true;
        }
        match (start, end) {
            (true, true) => id == core,
            (true, false) => id.starts_with(core),
            (false, true) => id.ends_with(core),
            (false, false) => id.contains(core),
        }
    })
}

/// `--list`: register benchmarks without preparing anything.
pub fn listing() -> bool {
    cli().list
}

/// Whether CPU references run at all (`WGCNN_BENCH_CPU=0` turns them off).
pub fn cpu_enabled() -> bool {
    !matches!(
        std::env::var("WGCNN_BENCH_CPU").as_deref(),
        Ok("0") | Ok("false") | Ok("no") | Ok("off")
    )
}

/// Seconds one CPU-reference iteration may take before it is skipped.
pub fn cpu_limit_s(default: f64) -> f64 {
    std::env::var("WGCNN_BENCH_CPU_LIMIT_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Times `iters` repetitions of `ds` (in order) including the wait for the device: up to
/// `PER_SUBMIT` dispatches are recorded into each submission (one compute pass, as a
/// training step is), and the clock stops after `gpu.wait()`.
pub fn time_dispatches(gpu: &Gpu, ds: &[&Dispatch], iters: u64) -> Duration {
    const PER_SUBMIT: usize = 256;
    gpu.wait().expect("idle device before timing");
    let reps_per_submit = (PER_SUBMIT / ds.len().max(1)).max(1) as u64;
    let mut list: Vec<&Dispatch> = Vec::with_capacity(PER_SUBMIT.max(ds.len()));
    let start = Instant::now();
    let mut left = iters;
    while left > 0 {
        let n = left.min(reps_per_submit);
        list.clear();
        for _ in 0..n {
            list.extend_from_slice(ds);
        }
        gpu.run(&list).expect("GPU submission");
        left -= n;
    }
    gpu.wait().expect("GPU wait");
    start.elapsed()
}

/// Runs `ds` for the first time (timed: with the shader compile, which lavapipe does at the
/// first dispatch) and then a few more times; prints the first-dispatch cost once per
/// kernel name to stderr. `setup` is the time already spent creating the dispatches
/// (pipeline creation), added to the first run.
pub fn first_dispatch(gpu: &Gpu, label: &str, setup: Duration, ds: &[&Dispatch]) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let t = Instant::now();
    gpu.run(ds).expect("first GPU submission");
    gpu.wait().expect("GPU wait");
    let first = setup + t.elapsed();
    let mut steady: Vec<Duration> = (0..3).map(|_| time_dispatches(gpu, ds, 1)).collect();
    steady.sort();
    let steady = steady[1];
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    let new: Vec<&str> = ds
        .iter()
        .map(|d| d.kernel.name())
        .filter(|k| seen.insert((*k).to_string()))
        .collect();
    if !new.is_empty() {
        eprintln!(
            "[first dispatch] {:<40} {:>9.1} ms (steady {:.2} ms, compile ≈ {:.1} ms) at {label}",
            new.join("+"),
            ms(first),
            ms(steady),
            ms(first.saturating_sub(steady)),
        );
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Whether a CPU reference runs (with the time of its probe iteration) or why not.
pub enum CpuGate {
    Run(Duration),
    /// Why, and the probe iteration's time when one ran.
    Skip(String, Option<Duration>),
}

/// Decides whether a CPU reference runs: when `estimate` (seconds per iteration, from a
/// smaller problem) already exceeds `limit`, it is skipped without running; otherwise one
/// real iteration is timed (`once`) and compared with the limit.
pub fn cpu_gate(limit: f64, estimate: Option<f64>, once: &mut dyn FnMut()) -> CpuGate {
    if let Some(e) = estimate.filter(|e| *e > limit) {
        return CpuGate::Skip(
            format!("estimated {e:.1} s per iteration (from a smaller problem) > {limit} s limit"),
            None,
        );
    }
    let t = Instant::now();
    once();
    let took = t.elapsed();
    if took.as_secs_f64() > limit {
        CpuGate::Skip(
            format!(
                "one iteration took {:.1} s > {limit} s limit",
                took.as_secs_f64()
            ),
            Some(took),
        )
    } else {
        CpuGate::Run(took)
    }
}

/// Configures `group` for a CPU reference measured at about `per_iter` per iteration:
/// flat sampling and the minimum 10 samples; a slow one (over 50 ms) gets one iteration per
/// sample after a one-iteration warm-up (criterion then warns that it is "unable to
/// complete 10 samples" in the target time: expected), a fast one half a second in all.
pub fn configure_cpu(group: &mut BenchmarkGroup<'_, WallTime>, per_iter: Duration) {
    let slow = per_iter > Duration::from_millis(50);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(if slow {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(200)
        })
        .measurement_time(per_iter.mul_f64(5.0).max(Duration::from_millis(500)));
}

/// Prints one line to stderr saying that a CPU reference was skipped, and why.
pub fn report_skip(id: &str, why: &str) {
    eprintln!("[cpu skipped] {id}: {why}");
}
