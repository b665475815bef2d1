//! Model bundles: a folder made by tools/liveportrait/convert.py from the official
//! checkpoints, with a `manifest.json` and one safetensors file per network component.
//!
//! The manifest has one section per model, each with its config and its component
//! files: `renderers.liveportrait` (the renderer's networks) and `motion_generators.*`
//! (several may sit side by side: `joyvasa`, `ditto`). Version 1 bundles (one flat component list, `liveportrait_config`,
//! `joyvasa`) are read as well.
//!
//! Loaded networks are shared: every user of the same bundle on the same device (and,
//! for the renderer, in the same precision) gets one copy ([`ModelCache`]); it is freed
//! when the last one drops it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::core::{Frozen, ModelCache, Precision};
use crate::models::ditto::{DittoConfig, DittoNetworks};
use crate::models::joyvasa::{JoyVasaConfig, MotionGenerator, MotionTemplate};
use crate::models::liveportrait::{self, LivePortrait, LivePortraitConfig};
use crate::nn::{Weights, WeightsError};

/// Written into every bundle manifest; a bundle of another format is refused.
pub const FORMAT: &str = "vasafacegen-bundle";
/// The manifest version the converter writes; [`OLDEST_VERSION`] on are read.
pub const VERSION: u32 = 2;
pub const OLDEST_VERSION: u32 = 1;

/// The motion generators this build can run, by their section name.
pub const JOYVASA: &str = "joyvasa";
/// Ditto's networks: `motion=ditto`.
pub const DITTO: &str = "ditto";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {detail}")]
    Manifest { path: PathBuf, detail: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
}

impl From<BundleError> for crate::core::Error {
    fn from(err: BundleError) -> Self {
        Self::model(err)
    }
}

/// One model in a bundle: its config and its component files (name -> file).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Section<C> {
    pub config: C,
    pub components: BTreeMap<String, String>,
}

/// The motion generators of a bundle; unknown ones (from a newer converter) are kept
/// by name, so that an error can list them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MotionGenerators {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joyvasa: Option<Section<JoyVasaConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ditto: Option<Section<DittoConfig>>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Renderers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveportrait: Option<Section<LivePortraitConfig>>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// `manifest.json` (the parts this crate reads), in the version 2 layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    #[serde(default)]
    pub renderers: Renderers,
    #[serde(default)]
    pub motion_generators: MotionGenerators,
}

/// The version 1 layout.
#[derive(Deserialize)]
struct ManifestV1 {
    components: BTreeMap<String, String>,
    liveportrait_config: Option<LivePortraitConfig>,
    #[serde(default)]
    joyvasa: Option<JoyVasaConfig>,
}

const JOYVASA_COMPONENTS: [&str; 2] = ["motion_generator", "motion_template"];

impl Manifest {
    /// Reads and checks the manifest of the bundle at `dir`.
    pub fn read(dir: &Path) -> Result<Self, BundleError> {
        let path = dir.join("manifest.json");
        let problem = |detail: String| BundleError::Manifest {
            path: path.clone(),
            detail,
        };
        let text = std::fs::read_to_string(&path).map_err(|err| {
            problem(format!(
                "cannot read the bundle manifest ({err}); make a bundle with \
                 tools/liveportrait/convert.py"
            ))
        })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|err| problem(format!("not a valid bundle manifest ({err})")))?;
        let format = value.get("format").and_then(|v| v.as_str());
        let version = value.get("version").and_then(|v| v.as_u64());
        if format != Some(FORMAT)
            || !version
                .is_some_and(|v| (u64::from(OLDEST_VERSION)..=u64::from(VERSION)).contains(&v))
        {
            return Err(problem(format!(
                "format {format:?} version {version:?}, expected {FORMAT:?} version \
                 {OLDEST_VERSION} to {VERSION} (a bundle from another program, or from a newer \
                 converter)"
            )));
        }
        let invalid =
            |err: serde_json::Error| problem(format!("not a valid bundle manifest ({err})"));
        let manifest = if version == Some(1) {
            let old: ManifestV1 = serde_json::from_value(value).map_err(invalid)?;
            let pick = |names: &[&str]| {
                old.components
                    .iter()
                    .filter(|(name, _)| names.contains(&name.as_str()))
                    .map(|(name, file)| (name.clone(), file.clone()))
                    .collect()
            };
            let renderer_names = liveportrait::COMPONENTS.map(|(name, _)| name);
            Self {
                format: FORMAT.into(),
                version: VERSION,
                renderers: Renderers {
                    liveportrait: old.liveportrait_config.map(|config| Section {
                        config,
                        components: pick(&renderer_names),
                    }),
                    unknown: BTreeMap::new(),
                },
                motion_generators: MotionGenerators {
                    joyvasa: old.joyvasa.map(|config| Section {
                        config,
                        components: pick(&JOYVASA_COMPONENTS),
                    }),
                    ditto: None,
                    unknown: BTreeMap::new(),
                },
            }
        } else {
            serde_json::from_value(value).map_err(invalid)?
        };
        if let Some(joyvasa) = &manifest.motion_generators.joyvasa
            && let Some(why) = joyvasa.config.problem()
        {
            return Err(problem(format!("motion generator joyvasa: {why}")));
        }
        if let Some(ditto) = &manifest.motion_generators.ditto
            && let Some(why) = ditto.config.problem()
        {
            return Err(problem(format!("motion generator ditto: {why}")));
        }
        Ok(manifest)
    }
}

/// A bundle folder and its manifest.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    manifest: Manifest,
}

impl Bundle {
    /// Opens the bundle at `dir` (reads its manifest; loads nothing).
    pub fn open(dir: &Path) -> Result<Self, BundleError> {
        Ok(Self {
            dir: dir.to_owned(),
            manifest: Manifest::read(dir)?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }

    /// The names of the motion generators in the bundle, this build's and others.
    pub fn motion_generator_names(&self) -> Vec<String> {
        let generators = &self.manifest.motion_generators;
        generators
            .joyvasa
            .as_ref()
            .map(|_| JOYVASA.to_owned())
            .into_iter()
            .chain(generators.ditto.as_ref().map(|_| DITTO.to_owned()))
            .chain(generators.unknown.keys().cloned())
            .collect()
    }

    pub fn has_joyvasa(&self) -> bool {
        self.manifest.motion_generators.joyvasa.is_some()
    }

    pub fn has_ditto(&self) -> bool {
        self.manifest.motion_generators.ditto.is_some()
    }

    /// The file of component `name` of a section.
    fn component(
        &self,
        section: &str,
        components: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<PathBuf, BundleError> {
        let file = components.get(name).ok_or_else(|| BundleError::Manifest {
            path: self.manifest_path(),
            detail: format!("component {name} of {section} is missing"),
        })?;
        // A component is a file of the bundle, not a path elsewhere.
        if Path::new(file).components().count() != 1 || file == ".." {
            return Err(BundleError::Manifest {
                path: self.manifest_path(),
                detail: format!(
                    "component {name} of {section} names {file:?}, not a file of the bundle"
                ),
            });
        }
        Ok(self.dir.join(file))
    }

    fn liveportrait_section(&self) -> Result<&Section<LivePortraitConfig>, BundleError> {
        self.manifest
            .renderers
            .liveportrait
            .as_ref()
            .ok_or_else(|| BundleError::Manifest {
                path: self.manifest_path(),
                detail: "the bundle has no LivePortrait renderer (no renderers.liveportrait \
                         section)"
                    .into(),
            })
    }

    fn joyvasa_section(&self) -> Result<&Section<JoyVasaConfig>, BundleError> {
        self.manifest
            .motion_generators
            .joyvasa
            .as_ref()
            .ok_or_else(|| BundleError::Manifest {
                path: self.manifest_path(),
                detail: format!(
                    "the bundle has no JoyVASA motion generator (it holds {}); convert one in \
                     with tools/liveportrait/convert.py --motion-generator",
                    match self.motion_generator_names() {
                        names if names.is_empty() => "none".to_owned(),
                        names => names.join(", "),
                    }
                ),
            })
    }

    /// Loads the LivePortrait networks from the files, to compute in `precision` (not
    /// shared: see [`Bundle::liveportrait`]).
    pub fn load_liveportrait(
        &self,
        device: Device,
        precision: Precision,
    ) -> Result<LivePortrait, BundleError> {
        let section = self.liveportrait_section()?;
        LivePortrait::load_files(&section.config, precision, |name| {
            let file = self.component("renderers.liveportrait", &section.components, name)?;
            Weights::load(&file, device).map_err(BundleError::from)
        })
    }

    /// Loads JoyVASA's motion generator from the files (not shared: see
    /// [`Bundle::joyvasa`]).
    pub fn load_joyvasa(&self, device: Device) -> Result<MotionGenerator, BundleError> {
        let section = self.joyvasa_section()?;
        let file = |name| self.component("motion_generators.joyvasa", &section.components, name);
        let template = MotionTemplate::load(&file("motion_template")?)?;
        let mut w = Weights::load(&file("motion_generator")?, device)?;
        let generator = MotionGenerator::new(&mut w, &section.config, template)?;
        w.finish()?;
        Ok(generator)
    }

    /// Loads Ditto's audio encoder and denoiser from the files.
    pub fn load_ditto(&self, device: Device) -> Result<DittoNetworks, BundleError> {
        let section = self
            .manifest
            .motion_generators
            .ditto
            .as_ref()
            .ok_or_else(|| BundleError::Manifest {
                path: self.manifest_path(),
                detail: "the bundle has no Ditto networks (no motion_generators.ditto section); \
                         convert them in with tools/liveportrait/convert.py --ditto-lmdm"
                    .into(),
            })?;
        let file = |name| self.component("motion_generators.ditto", &section.components, name);
        let mut hubert = Weights::load(&file("hubert")?, device)?;
        let mut lmdm = Weights::load(&file("lmdm")?, device)?;
        let networks = DittoNetworks::new(section.config.clone(), &mut hubert, &mut lmdm)?;
        hubert.finish()?;
        lmdm.finish()?;
        Ok(networks)
    }

    /// The bundle's LivePortrait networks on `device` in `precision`, one copy in the
    /// process while anything uses it.
    pub fn liveportrait(
        &self,
        device: Device,
        precision: Precision,
    ) -> Result<Arc<Frozen<LivePortrait>>, BundleError> {
        RENDERERS.get_or_load(&ModelKey::new(&self.dir, device, precision), || {
            self.load_liveportrait(device, precision)
        })
    }

    /// The bundle's JoyVASA motion generator on `device`, one copy in the process while
    /// anything uses it. It computes in float32 whatever the renderer's precision: it is
    /// a small share of a frame's work.
    pub fn joyvasa(&self, device: Device) -> Result<Arc<Frozen<MotionGenerator>>, BundleError> {
        GENERATORS.get_or_load(
            &ModelKey::new(&self.dir, device, Precision::Float32),
            || self.load_joyvasa(device),
        )
    }

    /// The bundle's Ditto networks on `device`, one copy in the process while anything
    /// uses them (float32, as JoyVASA's).
    pub fn ditto(&self, device: Device) -> Result<Arc<Frozen<DittoNetworks>>, BundleError> {
        DITTO_NETWORKS.get_or_load(
            &ModelKey::new(&self.dir, device, Precision::Float32),
            || self.load_ditto(device),
        )
    }

    /// A string naming the renderer's weights as loaded for `device` and `precision`
    /// (for caches of work done with them).
    pub fn describe(&self, device: Device, precision: Precision) -> String {
        let key = ModelKey::new(&self.dir, device, precision);
        format!(
            "{}:{:?}:{}:{:?}",
            key.dir.display(),
            key.device,
            key.precision,
            key.manifest_modified
        )
    }
}

/// Identifies loaded weights: the same bundle (by path and manifest time) on the same
/// device in the same precision is the same model.
#[derive(Debug, Clone, PartialEq)]
struct ModelKey {
    dir: PathBuf,
    manifest_modified: Option<std::time::SystemTime>,
    device: Device,
    precision: Precision,
}

impl ModelKey {
    fn new(dir: &Path, device: Device, precision: Precision) -> Self {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        let manifest_modified = std::fs::metadata(dir.join("manifest.json"))
            .and_then(|m| m.modified())
            .ok();
        Self {
            dir,
            manifest_modified,
            device,
            precision,
        }
    }
}

static RENDERERS: ModelCache<ModelKey, LivePortrait> = ModelCache::new();
static GENERATORS: ModelCache<ModelKey, MotionGenerator> = ModelCache::new();
static DITTO_NETWORKS: ModelCache<ModelKey, DittoNetworks> = ModelCache::new();

/// How many times the LivePortrait networks of the bundle at `dir` were read from disk
/// for `device` and `precision` in this process.
pub fn liveportrait_times_loaded(dir: &Path, device: Device, precision: Precision) -> usize {
    RENDERERS.times_loaded(&ModelKey::new(dir, device, precision))
}

/// How many times the JoyVASA motion generator of `dir` was read from disk for `device`.
pub fn joyvasa_times_loaded(dir: &Path, device: Device) -> usize {
    GENERATORS.times_loaded(&ModelKey::new(dir, device, Precision::Float32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, manifest: &str) {
        std::fs::write(dir.join("manifest.json"), manifest).unwrap();
    }

    #[test]
    fn unknown_formats_versions_and_damage_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("manifest.json") && err.contains("convert.py"),
            "{err}"
        );
        for (text, needle) in [
            ("{", "not a valid bundle manifest"),
            (r#"{"format": "other", "version": 2}"#, "\"other\""),
            (
                r#"{"format": "vasafacegen-bundle", "version": 9}"#,
                "version Some(9)",
            ),
            (
                r#"{"format": "vasafacegen-bundle", "version": 2, "renderers": 3}"#,
                "not a valid bundle manifest",
            ),
        ] {
            write(dir.path(), text);
            let err = Manifest::read(dir.path()).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn sections_components_and_generators_are_listed_or_named_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            r#"{"format": "vasafacegen-bundle", "version": 2, "renderers": {},
                "motion_generators": {"emotalk": {"config": {}, "components": {}}}}"#,
        );
        let bundle = Bundle::open(dir.path()).unwrap();
        // A generator of a newer converter is kept by name.
        assert_eq!(bundle.motion_generator_names(), ["emotalk"]);
        assert!(!bundle.has_joyvasa());
        let err = bundle.load_joyvasa(Device::Cpu).err().unwrap().to_string();
        assert!(
            err.contains("no JoyVASA motion generator") && err.contains("emotalk"),
            "{err}"
        );
        let err = bundle
            .load_liveportrait(Device::Cpu, Precision::Float32)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no LivePortrait renderer"), "{err}");
        let components = BTreeMap::from([("a".to_owned(), "../elsewhere.safetensors".to_owned())]);
        let err = bundle
            .component("x", &components, "a")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a file of the bundle"), "{err}");
        let err = bundle
            .component("x", &components, "b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("component b of x is missing"), "{err}");
    }
}
