//! What both axes share, below both: frame size and rate and the frame clock, audio
//! windows, motion values and controls, the error type, the compute device and
//! precision, CPU-thread policy, the random generator that seeds motion, and
//! thread-sharing helpers. Nothing here depends on another module of the crate.

pub mod audio;
pub mod device;
pub mod error;
pub mod frame;
pub mod motion;
pub mod precision;
pub mod random;
pub mod sync;
pub mod threads;

pub use self::audio::{AudioWindow, FrameSpan, SampleStore, level_db};
pub use self::device::{DeviceRequest, device_name};
pub use self::error::{Error, PortraitProblem, TensorContext, guarded};
pub use self::frame::{FrameRate, FrameSize, SAMPLE_RATE};
pub use self::motion::{
    BlinkSource, Composition, Emotion, EyeConditions, FaceControls, FaceMotion, Gaze,
    KeypointFrame, KeypointMotion, Motion, MotionControls, MotionKind, PortraitCues,
    SourceKeypoints,
};
pub use self::precision::Precision;
pub use self::sync::{Frozen, ModelCache, lock};
pub use self::threads::{CpuThreads, use_cpu_threads};
