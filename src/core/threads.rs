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
//! from a short-lived thread, so nothing else in the process changes.

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
