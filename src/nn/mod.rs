//! Building blocks of the neural networks: named weights taken key by key with their
//! shapes checked (and recorded, for official-size parameter lists), and the layers the
//! networks are made of (convolutions in 1-3 dimensions, spectral-norm folding, batch,
//! layer and instance norms, linear layers), each computing in the weights' kind.

pub mod graph;
pub mod layers;
pub mod weights;

pub use self::weights::{Weights, WeightsError};

impl From<WeightsError> for crate::core::Error {
    fn from(err: WeightsError) -> Self {
        Self::model(err)
    }
}
