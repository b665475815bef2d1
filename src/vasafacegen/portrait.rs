//! Preparing the portrait: synchronously at READY->PAUSED (before any data flows), and
//! on a thread of its own when `image`, `face-box` or the crop change while streaming
//! (the newest change wins; it is swapped in at the next frame boundary, and a bad file
//! leaves the current portrait in place with a warning, so a live show goes on).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{CAT, VasaFaceGen};
use super::settings::Settings;
use crate::core::{self as vcore, PortraitProblem, lock};
use crate::render::{PreparedSource, SourcePreparer};

/// A failed portrait preparation, with the GStreamer error domain that fits it.
struct PortraitFailure {
    message: String,
    domain: gst::ResourceError,
}

fn prepare_portrait(
    preparer: &dyn SourcePreparer,
    path: &Path,
    settings: &Settings,
) -> Result<Arc<PreparedSource>, PortraitFailure> {
    let hints = settings.hints().map_err(|err| PortraitFailure {
        message: err.to_string(),
        domain: gst::ResourceError::Settings,
    })?;
    crate::render::prepare_file(preparer, path, &hints).map_err(|err| match err {
        vcore::Error::Portrait { problem, source } => PortraitFailure {
            domain: match problem {
                PortraitProblem::NotFound => gst::ResourceError::NotFound,
                PortraitProblem::Unreadable => gst::ResourceError::OpenRead,
                PortraitProblem::Format => gst::ResourceError::Read,
                // The image is fine but the face cannot be found or the face box is wrong.
                PortraitProblem::Face => gst::ResourceError::Settings,
            },
            message: source.to_string(),
        },
        other => PortraitFailure {
            domain: gst::ResourceError::Read,
            message: other.to_string(),
        },
    })
}

impl VasaFaceGen {
    fn progress(&self, kind: gst::ProgressType, code: &str, text: &str) {
        let obj = self.obj();
        let _ = obj.post_message(
            gst::message::Progress::builder(kind, code, text)
                .src(&*obj)
                .build(),
        );
    }

    /// NULL->READY progress for the engine (the portrait's is posted here too).
    pub(super) fn engine_progress(&self, kind: gst::ProgressType, text: &str) {
        self.progress(kind, "engine", text);
    }

    /// READY->PAUSED: decode and prepare the portrait, before any data flows.
    pub(super) fn load_portrait(&self) -> Result<(), gst::StateChangeError> {
        let settings = lock(&self.settings).clone();
        let Some(path) = settings.image.clone() else {
            gst::element_imp_error!(
                self,
                gst::ResourceError::NotFound,
                ("No portrait: set the image property to a PNG, JPEG or WebP file, e.g. \
                  vasafacegen image=portrait.png")
            );
            return Err(gst::StateChangeError);
        };
        let preparer = lock(&self.preparer).clone().ok_or(gst::StateChangeError)?;
        self.progress(
            gst::ProgressType::Start,
            "portrait",
            "Preparing the portrait",
        );
        let generation = self.image_generation.fetch_add(1, Ordering::SeqCst) + 1;
        let source = prepare_portrait(&*preparer, &path, &settings).map_err(|err| {
            self.progress(
                gst::ProgressType::Error,
                "portrait",
                "Preparing the portrait failed",
            );
            gst::element_imp_error!(self, err.domain, ("{}", err.message));
            gst::StateChangeError
        })?;
        self.progress(gst::ProgressType::Complete, "portrait", "Portrait ready");
        gst::info!(
            CAT,
            imp = self,
            "portrait {} prepared (generation {generation})",
            path.display()
        );
        self.task
            .with(|task| task.start_stream(source, settings.seed));
        self.reset_latency();
        self.streaming.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// `image`, `face-box` or the crop changed: while streaming, the portrait is
    /// prepared again.
    pub(super) fn portrait_changed(&self) {
        let image = lock(&self.settings).image.clone();
        if let Some(path) = image
            && self.streaming.load(Ordering::SeqCst)
        {
            self.prepare_in_background(path);
        }
    }

    /// Prepares the portrait at `path` on its own thread; the task swaps it in at the
    /// next frame boundary unless a newer change superseded it.
    fn prepare_in_background(&self, path: PathBuf) {
        let Some(preparer) = lock(&self.preparer).clone() else {
            return;
        };
        let generation = self.image_generation.fetch_add(1, Ordering::SeqCst) + 1;
        let settings = lock(&self.settings).clone();
        let element = self.obj().downgrade();
        let spawned = std::thread::Builder::new()
            .name("vasafacegen-prepare".into())
            .spawn(move || {
                let result = prepare_portrait(&*preparer, &path, &settings);
                let Some(element) = element.upgrade() else {
                    return;
                };
                let imp = element.imp();
                match result {
                    Ok(source) => {
                        if imp.image_generation.load(Ordering::SeqCst) != generation {
                            gst::debug!(CAT, imp = imp, "{} superseded", path.display());
                            return;
                        }
                        gst::info!(CAT, imp = imp, "new portrait {} ready", path.display());
                        lock(&imp.shared).new_source = Some(source);
                    }
                    Err(err) => {
                        gst::element_imp_warning!(
                            imp,
                            err.domain,
                            ("{}; keeping the previous portrait", err.message)
                        );
                    }
                }
            });
        if let Err(err) = spawned {
            gst::element_imp_warning!(
                self,
                gst::CoreError::Thread,
                ("Cannot start preparing the new portrait: {err}")
            );
        }
    }
}
