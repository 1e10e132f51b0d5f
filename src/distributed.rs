//! Data-parallel training over MPI, as PyTorch's DDP and Horovod do it: one process
//! (rank) per GPU, each training on its shard of every batch, the gradients averaged with
//! an all-reduce between the backward pass and the update, so that every rank applies the
//! same update and holds the same weights.
//!
//! ```no_run
//! use wgcnn::prelude::*;
//! # fn main() -> anyhow::Result<()> {
//! // Once per process, kept alive until the end of `main` (dropping it ends MPI).
//! let dist = Distributed::init()?;
//! let mut model = wgcnn::experiments::experiment("mnist-conv")?.model()?;
//! model.set_distributed(&dist); // before compile: the device follows the local rank
//! model.compile(Optimizer::adam(), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy])?;
//! # Ok(()) }
//! ```
//!
//! Without the `mpi` cargo feature, or in a program not started by `mpirun`,
//! [`Distributed::init`] gives one rank and everything runs as in one process. The
//! collectives are host-side: a step reads its gradients back into one buffer, all-reduces
//! it in [`BUCKET_BYTES`] pieces (Horovod's tensor fusion, DDP's 25 MiB buckets) and writes
//! the average back before the update.

use anyhow::Result;
#[cfg(feature = "mpi")]
use anyhow::{Context, bail};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Bytes of gradient all-reduced per collective call (DDP's default bucket, 25 MiB).
pub const BUCKET_BYTES: usize = 25 << 20;

/// This process's place among the ranks of a job: which one it is and how many there
/// are. Copied into every model trained data-parallel ([`crate::model::Model::set_distributed`]).
/// Every collective below must be called by every rank in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranks {
    rank: usize,
    size: usize,
}

impl Default for Ranks {
    fn default() -> Ranks {
        Ranks::single()
    }
}

impl Ranks {
    /// One process on its own.
    pub const fn single() -> Ranks {
        Ranks { rank: 0, size: 1 }
    }

    /// This process's rank, 0-based.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// How many ranks the job has.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Rank 0: the one that prints, writes the run folder and checkpoints.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Whether there are other ranks to talk to.
    pub fn is_distributed(&self) -> bool {
        self.size > 1
    }

    /// This rank's contiguous share `[start, end)` of `n` items: sizes differ by at most
    /// one, in rank order (a global batch of 7 over 2 ranks: 0..3 and 3..7).
    pub fn shard(&self, n: usize) -> (usize, usize) {
        (self.rank * n / self.size, (self.rank + 1) * n / self.size)
    }

    /// Sums `values` element-wise over the ranks, in place, in buckets of
    /// [`BUCKET_BYTES`]. Every rank gets the same result.
    pub fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
        let bytes = std::mem::size_of_val(values);
        self.collective(bytes, || mpi_ops::all_reduce_sum(values))
    }

    /// Sums `values` element-wise over the ranks, in place (totals: loss sums, counts).
    pub fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let bytes = std::mem::size_of_val(values);
        self.collective(bytes, || mpi_ops::all_reduce_sum_f64(values))
    }

    /// Overwrites `values` on every rank with rank 0's.
    pub fn broadcast(&self, values: &mut [f32]) -> Result<()> {
        let bytes = std::mem::size_of_val(values);
        self.collective(bytes, || mpi_ops::broadcast(values))
    }

    /// Runs `op` over `bytes` when there are other ranks, and counts its time.
    fn collective(&self, bytes: usize, op: impl FnOnce() -> Result<()>) -> Result<()> {
        if !self.is_distributed() || bytes == 0 {
            return Ok(());
        }
        let t = std::time::Instant::now();
        op()?;
        let nanos = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        COMM_NANOS.fetch_add(nanos, Ordering::Relaxed);
        COMM_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
        COMM_CALLS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Ends the whole job (every rank) with exit code `code`, after printing `message`
    /// with this rank's number; in one process, just exits.
    pub fn abort(&self, message: &str, code: i32) -> ! {
        eprintln!("error (rank {} of {}): {message}", self.rank, self.size);
        #[cfg(feature = "mpi")]
        if self.is_distributed() {
            mpi_ops::abort(code);
        }
        std::process::exit(code)
    }

    /// `Ok(v)` as it is; on any rank of a distributed job an error ends the whole job
    /// (the other ranks would otherwise wait in their next collective for ever).
    pub fn or_abort<T>(&self, result: Result<T>) -> Result<T> {
        match result {
            Err(e) if self.is_distributed() => self.abort(&format!("{e:#}"), 1),
            other => other,
        }
    }
}

static COMM_NANOS: AtomicU64 = AtomicU64::new(0);
static COMM_BYTES: AtomicU64 = AtomicU64::new(0);
static COMM_CALLS: AtomicU64 = AtomicU64::new(0);

/// What this process's collectives have cost so far (nothing in one process): subtract two
/// readings to time a stretch of training.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommStats {
    /// Wall seconds inside collectives (all exposed: none overlaps the GPU's work).
    pub seconds: f64,
    /// Bytes this rank contributed.
    pub bytes: u64,
    /// Collective calls.
    pub calls: u64,
}

/// The collectives' totals since the process started.
pub fn comm_stats() -> CommStats {
    CommStats {
        seconds: COMM_NANOS.load(Ordering::Relaxed) as f64 * 1e-9,
        bytes: COMM_BYTES.load(Ordering::Relaxed),
        calls: COMM_CALLS.load(Ordering::Relaxed),
    }
}

impl std::ops::Sub for CommStats {
    type Output = CommStats;
    fn sub(self, earlier: CommStats) -> CommStats {
        CommStats {
            seconds: self.seconds - earlier.seconds,
            bytes: self.bytes - earlier.bytes,
            calls: self.calls - earlier.calls,
        }
    }
}

/// One process has no other ranks: [`Ranks::collective`] never calls these.
#[cfg(not(feature = "mpi"))]
mod mpi_ops {
    use anyhow::{Result, bail};
    const NO_MPI: &str = "several ranks without the `mpi` feature";

    pub fn all_reduce_sum(_: &mut [f32]) -> Result<()> {
        bail!(NO_MPI)
    }

    pub fn all_reduce_sum_f64(_: &mut [f64]) -> Result<()> {
        bail!(NO_MPI)
    }

    pub fn broadcast(_: &mut [f32]) -> Result<()> {
        bail!(NO_MPI)
    }
}

/// The rank within this machine, which picks this process's adapter (see
/// [`crate::gpu::Gpu::new`]); 0 in one process.
static LOCAL_RANK: AtomicUsize = AtomicUsize::new(0);

/// The rank of this process among the ranks on its machine.
pub fn local_rank() -> usize {
    LOCAL_RANK.load(Ordering::Relaxed)
}

/// The job: MPI, started once per process. Keep it alive until the end of `main`;
/// dropping it finalizes MPI.
pub struct Distributed {
    ranks: Ranks,
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

impl Distributed {
    /// Starts MPI when the program runs under `mpirun` with the `mpi` feature and notes
    /// this rank's place (and its local rank, for the adapter); otherwise one rank. With
    /// several ranks, a panic on any of them ends the whole job (`MPI_Abort`) instead of
    /// leaving the others waiting. Call it once per process.
    pub fn init() -> Result<Distributed> {
        #[cfg(feature = "mpi")]
        {
            if !launched_by_mpirun() {
                return Ok(Distributed::single());
            }
            use mpi::traits::Communicator;
            let (universe, _) =
                mpi::initialize_with_threading(mpi::environment::Threading::Funneled)
                    .context("MPI was initialised already: call Distributed::init once")?;
            let world = universe.world();
            let (rank, size) = (world.rank(), world.size());
            let ranks = Ranks {
                rank: usize::try_from(rank).context("a negative MPI rank")?,
                size: usize::try_from(size).context("a negative MPI size")?,
            };
            if size < 1 {
                bail!("MPI reports {size} ranks");
            }
            LOCAL_RANK.store(
                local_rank_from_env().unwrap_or(ranks.rank),
                Ordering::Relaxed,
            );
            if ranks.is_distributed() {
                abort_on_panic(ranks);
                // The first collective of a process is slow (12–45 ms here): pay it now.
                ranks.all_reduce_sum_f64(&mut [0.0])?;
            }
            Ok(Distributed {
                ranks,
                _universe: Some(universe),
            })
        }
        #[cfg(not(feature = "mpi"))]
        Ok(Distributed::single())
    }

    /// One rank, no MPI.
    pub fn single() -> Distributed {
        Distributed {
            ranks: Ranks::single(),
            #[cfg(feature = "mpi")]
            _universe: None,
        }
    }

    /// This process's rank and the job's size.
    pub fn ranks(&self) -> Ranks {
        self.ranks
    }

    /// This process's rank, 0-based.
    pub fn rank(&self) -> usize {
        self.ranks.rank
    }

    /// How many ranks the job has.
    pub fn size(&self) -> usize {
        self.ranks.size
    }

    /// Rank 0: the one that prints and writes.
    pub fn is_root(&self) -> bool {
        self.ranks.is_root()
    }
}

/// Whether an MPI launcher started this process (Open MPI, MPICH/Hydra, PMIx, Slurm).
#[cfg(feature = "mpi")]
fn launched_by_mpirun() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_RANK",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// The local rank the launcher exported (Open MPI, MPICH/Hydra).
#[cfg(feature = "mpi")]
fn local_rank_from_env() -> Option<usize> {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// Prints the panic as usual, then, on the thread that started MPI (the only one allowed
/// to call it at the threading level asked for), ends every rank of the job. A panic on
/// another thread (a data loader's worker) reaches that thread when its scope joins.
#[cfg(feature = "mpi")]
fn abort_on_panic(ranks: Ranks) {
    let previous = std::panic::take_hook();
    let main = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if std::thread::current().id() == main {
            eprintln!(
                "rank {} of {} panicked; ending the job",
                ranks.rank, ranks.size
            );
            mpi_ops::abort(101);
        }
    }));
}

#[cfg(feature = "mpi")]
mod mpi_ops {
    use super::BUCKET_BYTES;
    use anyhow::Result;
    use mpi::collective::SystemOperation;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::{Communicator, CommunicatorCollectives, Root};

    pub fn all_reduce_sum(values: &mut [f32]) -> Result<()> {
        let world = SimpleCommunicator::world();
        let bucket = BUCKET_BYTES / 4;
        let mut send = vec![0f32; bucket.min(values.len())];
        for chunk in values.chunks_mut(bucket) {
            let send = &mut send[..chunk.len()];
            send.copy_from_slice(chunk);
            world.all_reduce_into(&send[..], chunk, SystemOperation::sum());
        }
        Ok(())
    }

    pub fn all_reduce_sum_f64(values: &mut [f64]) -> Result<()> {
        let world = SimpleCommunicator::world();
        let send = values.to_vec();
        world.all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }

    pub fn broadcast(values: &mut [f32]) -> Result<()> {
        let world = SimpleCommunicator::world();
        for chunk in values.chunks_mut(BUCKET_BYTES / 4) {
            world.process_at_rank(0).broadcast_into(chunk);
        }
        Ok(())
    }

    pub fn abort(code: i32) -> ! {
        SimpleCommunicator::world().abort(code)
    }
}
