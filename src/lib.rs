//! gst-plugin-vasafacegen: the `vasafacegen` element turns a still portrait and speech
//! into a talking-face video stream.
//!
//! Layout: `vasafacegen/` is the element (the only GStreamer code); `engine/` turns audio
//! into motion; `render/` draws frames; `portrait` loads images; `timeline` is the frame
//! clock; `device` picks CPU or GPU.

pub mod device;
pub mod engine;
pub mod face;
pub mod joyvasa;
pub mod liveportrait;
pub mod portrait;
pub mod render;
pub mod timeline;
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
