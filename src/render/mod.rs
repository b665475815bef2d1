//! Where frames get drawn: placing the portrait in the frame and packing finished frames
//! into the byte layouts video buffers use.

pub mod crop;
pub mod fit;
pub mod pack;
pub mod warp;
