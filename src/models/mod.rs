//! Network definitions, built from named weights and a config, with parameter paths
//! that mirror the checkpoints' keys: the builtin audio-to-mouth network trained here
//! (`mouth`), LivePortrait's renderer networks, JoyVASA's motion generator, Ditto's
//! LMDM and sampler, and HuBERT
//! (JoyVASA's base encoder and the large one Ditto's audio features come from).

pub mod ditto;
pub mod hubert;
pub mod joyvasa;
pub mod liveportrait;
pub mod mouth;
