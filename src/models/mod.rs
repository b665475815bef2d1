//! Network definitions, built from named weights and a config, with parameter paths
//! that mirror the checkpoints' keys: the builtin audio-to-mouth network trained here
//! (`mouth`), LivePortrait's renderer networks and JoyVASA's motion generator.

pub mod joyvasa;
pub mod liveportrait;
pub mod mouth;
