//! How many CPU threads libtorch uses for a piece of work.
//!
//! The builtin motion and warp renderer work on small tensors (a face-sized region, a
//! 31-frame feature window): from a thread other than the process's first (the
//! element's streaming task) libtorch's OpenMP team makes them 2-3 times slower than one
//! thread (measured: motion 1.3 ms vs 0.5 ms, render 1.8 ms vs 1.2 ms per frame at
//! 512x512 on 2 cores), and one thread leaves the other cores to the encoder. The neural
//! networks are large and want every core. An engine may pair the two (the builtin
//! motion drawn by LivePortrait), so each side states what it wants and the engine sets
//! it before each call, every frame: a setting made once would stay with whichever side
//! ran last.
//!
//! libtorch's setting is per thread, but it also records the count for threads that
//! start using libtorch later; when one thread is asked for, that record is put back
//! from a short-lived thread, so nothing else in the process changes. A thread takes
//! that record at its first parallel loop, not when it first asks: so that a record
//! another thread has set to 1 for a moment cannot slip in after this thread's own
//! setting (it did once in a test run: two engines in one process, one frame computed
//! on one thread, the seeded frames no longer bit-identical), each thread runs a first
//! parallel loop before it sets its count.

use std::cell::Cell;
use std::sync::OnceLock;

use tch::Device;

/// What a piece of work wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuThreads {
    /// The calling thread alone.
    One,
    /// One per core (libtorch's default).
    All,
}

/// libtorch's thread count before this crate changed it: one per core.
fn default_threads() -> i32 {
    static DEFAULT: OnceLock<i32> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, |n| i32::try_from(n.get()).unwrap_or(1))
    })
}

/// Makes the calling thread's libtorch CPU work use `threads` (nothing on a GPU).
pub fn use_cpu_threads(device: Device, threads: CpuThreads) {
    if device != Device::Cpu {
        return;
    }
    thread_local! {
        static STARTED: Cell<bool> = const { Cell::new(false) };
    }
    if !STARTED.replace(true) {
        // Large enough for libtorch to split it (and take the recorded count first).
        let _ = tch::Tensor::ones([1 << 17], (tch::Kind::Float, Device::Cpu)).sum(tch::Kind::Float);
    }
    let wanted = match threads {
        CpuThreads::One => 1,
        CpuThreads::All => default_threads(),
    };
    if tch::get_num_threads() == wanted {
        return;
    }
    tch::set_num_threads(wanted);
    let default = default_threads();
    if wanted != default {
        let _ = std::thread::spawn(move || tch::set_num_threads(default)).join();
    }
}
