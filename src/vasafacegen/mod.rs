//! The `vasafacegen` element: a still portrait and speech in, a talking face out.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct VasaFaceGen(ObjectSubclass<imp::VasaFaceGen>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "vasafacegen",
        gst::Rank::NONE,
        VasaFaceGen::static_type(),
    )
}
