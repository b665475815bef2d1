//! The one error type of everything that computes: what went wrong, in words a user can
//! act on, and which kind of problem it is, so that the element can pick the GStreamer
//! error domain without knowing the module that failed.

/// Boxed error of a lower module (weights, bundles, images, face analysis), kept as the
/// source so that nothing of its message is lost.
pub type Source = Box<dyn std::error::Error + Send + Sync>;

/// What is wrong with a portrait, for the element's choice of error domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortraitProblem {
    /// The file does not exist.
    NotFound,
    /// The file exists but cannot be read.
    Unreadable,
    /// The file is not an image this plugin decodes, or it is damaged.
    Format,
    /// The image is fine, but no face is found there, or the face box is wrong.
    Face,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting, or a combination of settings, that cannot work.
    #[error("{0}")]
    Settings(String),
    /// The portrait cannot be animated.
    #[error("{source}")]
    Portrait {
        problem: PortraitProblem,
        source: Source,
    },
    /// Weights or a model bundle that cannot be loaded.
    #[error(transparent)]
    Model(Source),
    /// A computation failed (libtorch's error, or a panic inside libtorch).
    #[error("{context}: {source}")]
    Tensor {
        context: String,
        source: tch::TchError,
    },
}

impl Error {
    /// A computation that failed for a reason of our own (not libtorch's).
    pub fn compute(context: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Tensor {
            context: context.into(),
            source: tch::TchError::Torch(reason.into()),
        }
    }

    pub fn model(source: impl Into<Source>) -> Self {
        Self::Model(source.into())
    }
}

/// Adds what was being done to a libtorch error.
pub trait TensorContext<T> {
    fn context(self, context: impl Into<String>) -> Result<T, Error>;
}

impl<T> TensorContext<T> for Result<T, tch::TchError> {
    fn context(self, context: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Tensor {
            context: context.into(),
            source,
        })
    }
}

/// The message of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown failure")
}

/// Runs tensor code that may panic inside libtorch (out of memory, a device lost) and
/// turns a panic into an error naming what was being done.
pub fn guarded<T>(context: &str, work: impl FnOnce() -> T) -> Result<T, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .map_err(|panic| Error::compute(context, panic_message(&*panic)))
}

/// A tensor read back to the host as `f32` values, with `expected` values or an error
/// that says what was being read (a read-back must never quietly give an empty table).
pub fn read_back(tensor: &tch::Tensor, what: &str, expected: usize) -> Result<Vec<f32>, Error> {
    let values = tensor
        .f_to_device(tch::Device::Cpu)
        .and_then(|t| t.f_to_kind(tch::Kind::Float))
        .and_then(|t| t.f_flatten(0, -1))
        .and_then(|t| Vec::<f32>::try_from(&t))
        .context(format!("reading back {what}"))?;
    if values.len() != expected {
        return Err(Error::compute(
            format!("reading back {what}"),
            format!("{} values, expected {expected}", values.len()),
        ));
    }
    Ok(values)
}
