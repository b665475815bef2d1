//! gst-plugin-vasafacegen: the `vasafacegen` element turns a still portrait and speech
//! into a talking-face video stream.
//!
//! Layout (imports flow down this list, never up; docs/ARCHITECTURE.md has the picture):
//! - `vasafacegen/`: the element, the only GStreamer code of the library;
//! - `engine/`: one motion source and one renderer, paired and checked;
//! - `motion/` (audio becomes motion) and `render/` (motion becomes frames): the two
//!   axes, which never import each other;
//! - `bundle`: model bundles, their manifests and the shared copies of loaded weights;
//! - `models/`: network definitions (the builtin mouth model, LivePortrait, JoyVASA);
//! - `nn/`: weights loading and layers;
//! - `face/` and `portrait`: face analysis and image loading;
//! - `core/`: the value types, errors, device and precision that everything shares.

pub mod bundle;
pub mod core;
pub mod engine;
pub mod face;
pub mod models;
pub mod motion;
pub mod nn;
pub mod portrait;
pub mod render;
mod vasafacegen;

use gst::glib;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    vasafacegen::register(plugin)
}

gst::plugin_define!(
    vasafacegen,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
