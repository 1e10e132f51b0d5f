//! All-reduce (sum of f32) between the ranks of an MPI job, by message size: what one
//! bucket of a data-parallel step costs. Rank 0 prints a Markdown table of the median
//! time, the algorithm bandwidth (bytes / time) and the bus bandwidth (a ring all-reduce
//! moves 2(N − 1)/N of the bytes through each link: NCCL's and Horovod's measure).
//!
//! ```text
//! cargo build --release --features mpi --example allreduce
//! mpirun -np 2 --bind-to none target/release/examples/allreduce [REPEATS]
//! ```
use anyhow::Result;
use std::time::Instant;
use wgcnn::distributed::{BUCKET_BYTES, Distributed};

fn main() -> Result<()> {
    let dist = Distributed::init()?;
    let ranks = dist.ranks();
    let repeats: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20);
    let n = dist.size();
    if dist.is_root() {
        println!(
            "{n} ranks; median of {repeats} all-reduces per size (buckets of {} MiB)\n",
            BUCKET_BYTES >> 20
        );
        println!("| bytes | ms | algorithm GB/s | bus GB/s |\n|---:|---:|---:|---:|");
    }
    for bytes in [4 << 10, 64 << 10, 1 << 20, 4 << 20, 25 << 20, 64 << 20] {
        let mut values = vec![1.0f32; bytes / 4];
        ranks.all_reduce_sum(&mut values)?; // warm
        let mut times = Vec::with_capacity(repeats);
        for _ in 0..repeats.max(1) {
            let t = Instant::now();
            ranks.all_reduce_sum(&mut values)?;
            times.push(t.elapsed().as_secs_f64());
        }
        // The ranks' mean of their medians.
        times.sort_by(f64::total_cmp);
        let mut median = [times[times.len() / 2]];
        ranks.all_reduce_sum_f64(&mut median)?;
        let s = median[0] / n as f64;
        if dist.is_root() {
            let algo = bytes as f64 / s / 1e9;
            let bus = algo * 2.0 * (n.max(2) - 1) as f64 / n as f64;
            println!("| {bytes} | {:.3} | {algo:.2} | {bus:.2} |", s * 1e3);
        }
    }
    Ok(())
}
