//! Every bad input gets an element error that names the problem; nothing panics or hangs.

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `audiotestsrc ! vasafacegen <props> ! fakesink` and returns its error text.
fn error_with(properties: &str) -> String {
    let pipeline = launch(&format!(
        "audiotestsrc num-buffers=5 samplesperbuffer=1600 ! {AUDIO_CAPS} \
         ! vasafacegen {properties} ! video/x-raw,width=64,height=64 ! fakesink"
    ));
    run_pipeline(&pipeline, TIMEOUT).expect("an error")
}

fn assert_mentions(error: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            error.contains(needle),
            "error does not mention {needle:?}: {error}"
        );
    }
}

#[test]
fn image_unset() {
    let error = error_with("");
    assert_mentions(&error, &["No portrait", "set the image property"]);
}

#[test]
fn image_missing() {
    let error = error_with("image=/no/such/dir/face.png");
    assert_mentions(&error, &["/no/such/dir/face.png", "does not exist"]);
}

#[test]
fn image_unreadable() {
    // A directory cannot be read as a file (root ignores permission bits, so chmod 000
    // would not make a file unreadable in CI).
    let dir = tempfile::tempdir().unwrap();
    let error = error_with(&format!("image={}", dir.path().display()));
    assert_mentions(
        &error,
        &[&dir.path().display().to_string(), "cannot be read"],
    );
}

#[test]
fn image_not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.png");
    std::fs::write(&path, "this is text, not a picture\n").unwrap();
    let error = error_with(&format!("image={}", path.display()));
    assert_mentions(&error, &["notes.png", "not an image", "PNG, JPEG or WebP"]);
}

#[test]
fn image_of_an_unsupported_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("face.gif");
    // The GIF signature: a real image format this element does not take.
    std::fs::write(&path, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    let error = error_with(&format!("image={}", path.display()));
    assert_mentions(&error, &["face.gif", "not an image in a supported format"]);
}

fn truncated_copy(
    dir: &std::path::Path,
    name: &str,
    format: image::ImageFormat,
) -> std::path::PathBuf {
    let source = image::open(astronaut()).unwrap();
    let full = dir.join(format!("full-{name}"));
    source.save_with_format(&full, format).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    path
}

#[test]
fn image_truncated_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = truncated_copy(dir.path(), "half.png", image::ImageFormat::Png);
    let error = error_with(&format!("image={}", path.display()));
    assert_mentions(&error, &["half.png", "damaged or truncated"]);
}

#[test]
fn image_truncated_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let path = truncated_copy(dir.path(), "half.jpg", image::ImageFormat::Jpeg);
    let error = error_with(&format!("image={}", path.display()));
    assert_mentions(&error, &["half.jpg", "damaged or truncated"]);
}

#[test]
fn image_truncated_webp() {
    let dir = tempfile::tempdir().unwrap();
    let path = truncated_copy(dir.path(), "half.webp", image::ImageFormat::WebP);
    let error = error_with(&format!("image={}", path.display()));
    assert_mentions(&error, &["half.webp", "damaged or truncated"]);
}

#[test]
fn unsupported_device_string() {
    let error = error_with(&format!("image={} device=gpu0", astronaut().display()));
    assert_mentions(&error, &["unsupported device \"gpu0\"", "cuda:N"]);
}

#[test]
fn cuda_without_a_gpu() {
    if tch::Cuda::is_available() {
        eprintln!("skipped: this machine has a GPU");
        return;
    }
    let error = error_with(&format!("image={} device=cuda:0", astronaut().display()));
    assert_mentions(&error, &["cuda:0", "sees no CUDA GPU", "device=cpu"]);
}

#[test]
fn unknown_model() {
    let error = error_with(&format!(
        "image={} model=/models/none",
        astronaut().display()
    ));
    assert_mentions(
        &error,
        &[
            "model \"/models/none\"",
            "neither \"builtin\" nor a model bundle directory",
            "convert.py",
        ],
    );
}

#[test]
fn model_directory_without_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let error = error_with(&format!(
        "image={} model={}",
        astronaut().display(),
        dir.path().display()
    ));
    assert_mentions(
        &error,
        &[
            &dir.path().join("manifest.json").display().to_string(),
            "cannot read the bundle manifest",
        ],
    );
}

#[test]
fn model_bundle_with_a_damaged_weight_file() {
    let bundle = copy_of_fixture_bundle();
    let file = bundle.path().join("warping_module.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let error = error_with(&format!(
        "image={} model={}",
        astronaut().display(),
        bundle.path().display()
    ));
    assert_mentions(
        &error,
        &["warping_module.safetensors", "not a valid safetensors file"],
    );
}

/// A closed set of values is a GLib enum: a value outside it is refused where the
/// pipeline is described, naming the property and the value.
fn refused_value(property: &str, value: &str) {
    init();
    let err = gst::parse::launch(&format!(
        "audiotestsrc ! vasafacegen {property}={value} ! fakesink"
    ))
    .err()
    .unwrap_or_else(|| panic!("{property}={value} was accepted"));
    assert_mentions(&err.to_string(), &[property, value]);
}

#[test]
fn unknown_precision() {
    refused_value("precision", "float8");
}

#[test]
fn unknown_motion_source_or_blinks() {
    refused_value("motion", "sadtalker");
    refused_value("blinks", "never");
}

#[test]
fn joyvasa_motion_without_a_bundle() {
    let error = error_with(&format!("image={} motion=joyvasa", astronaut().display()));
    assert_mentions(
        &error,
        &[
            "motion=joyvasa",
            "model=builtin",
            "--motion-generator",
            "motion=builtin",
        ],
    );
}

#[test]
fn joyvasa_motion_with_a_bundle_that_has_no_generator() {
    let error = error_with(&format!(
        "image={} model={} motion=joyvasa",
        astronaut().display(),
        fixture_bundle().display()
    ));
    assert_mentions(
        &error,
        &[
            "motion=joyvasa",
            &fixture_bundle().display().to_string(),
            "no JoyVASA motion generator",
            "it holds none",
        ],
    );
}

#[test]
fn float16_on_the_cpu() {
    let error = error_with(&format!(
        "image={} model={} device=cpu precision=float16",
        astronaut().display(),
        fixture_bundle().display()
    ));
    assert_mentions(
        &error,
        &["precision=float16 needs a CUDA device", "bfloat16"],
    );
}

#[test]
fn buffers_without_timestamps() {
    init();
    let pipeline = launch(&format!(
        "appsrc name=src format=time caps={AUDIO_CAPS} \
         ! vasafacegen image={} ! video/x-raw,width=64,height=64 ! fakesink",
        astronaut().display()
    ));
    let appsrc = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let bytes = vec![0u8; 3200];
    let _ = appsrc.push_buffer(gst::Buffer::from_mut_slice(bytes));
    let _ = appsrc.end_of_stream();
    let error = run_pipeline(&pipeline, TIMEOUT).expect("an error");
    assert_mentions(&error, &["without a timestamp", "do-timestamp=true"]);
}

#[test]
fn non_time_segment() {
    init();
    let pipeline = launch(&format!(
        "appsrc name=src format=bytes caps={AUDIO_CAPS} \
         ! vasafacegen image={} ! video/x-raw,width=64,height=64 ! fakesink",
        astronaut().display()
    ));
    let appsrc = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let _ = appsrc.push_buffer(gst::Buffer::from_mut_slice(vec![0u8; 3200]));
    let _ = appsrc.end_of_stream();
    let error = run_pipeline(&pipeline, TIMEOUT).expect("an error");
    assert_mentions(&error, &["Segment in Bytes format", "needs TIME segments"]);
}

#[test]
fn invalid_device_is_also_warned_about_when_set() {
    // Setting the property does not fail (GObject setters cannot), but the typo is logged
    // at once and the state change fails with the error above.
    init();
    let element = gst::ElementFactory::make("vasafacegen").build().unwrap();
    element.set_property("device", "cuda:x");
    assert_eq!(element.property::<String>("device"), "cuda:x");
    assert!(element.set_state(gst::State::Ready).is_err());
    let _ = element.set_state(gst::State::Null);
}

#[test]
fn no_face_in_the_portrait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wall.png");
    image::RgbImage::from_pixel(320, 240, image::Rgb([180, 170, 150]))
        .save(&path)
        .unwrap();
    let error = error_with(&format!("image={}", path.display()));
    assert_mentions(&error, &["no face found", "wall.png", "face-box="]);
}

#[test]
fn malformed_face_box() {
    let error = error_with(&format!("image={} face-box=1,2", astronaut().display()));
    assert_mentions(
        &error,
        &["face-box \"1,2\" is not a box", "x,y,width,height"],
    );
}

#[test]
fn face_box_outside_the_image() {
    let error = error_with(&format!(
        "image={} face-box=\"900,900,40,40\"",
        astronaut().display()
    ));
    assert_mentions(&error, &["lies outside", "512x512"]);
}

#[test]
fn face_box_rescues_a_portrait_the_detector_misses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wall.png");
    image::RgbImage::from_pixel(320, 240, image::Rgb([180, 170, 150]))
        .save(&path)
        .unwrap();
    let pipeline = launch(&format!(
        "audiotestsrc num-buffers=5 samplesperbuffer=1600 ! {AUDIO_CAPS} \
         ! vasafacegen image={} face-box=\"120,60,80,100\" ! video/x-raw,width=64,height=64 ! fakesink",
        path.display()
    ));
    assert_eq!(run_pipeline(&pipeline, TIMEOUT), None);
}

/// CRC-32 (ISO-HDLC, as PNG chunks use), bit by bit: this test needs it for one chunk.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let mut checked = kind.to_vec();
    checked.extend_from_slice(data);
    chunk.extend_from_slice(&crc32(&checked).to_be_bytes());
    chunk
}

#[test]
fn image_that_declares_a_gigapixel_size_is_refused_before_decoding() {
    // A decompression bomb: a valid header declaring 40000x40000 RGB pixels (4.8 GB
    // decoded) in a file of a few hundred bytes; the start of a zlib stream of zero rows
    // follows, as in a real bomb.
    let mut header = Vec::new();
    header.extend_from_slice(&40_000u32.to_be_bytes());
    header.extend_from_slice(&40_000u32.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut idat = vec![0x78, 0x9c];
    idat.extend_from_slice(&[0xed, 0xc1, 0x01, 0x0d, 0x00, 0x00, 0x00, 0xc2, 0xa0]);
    idat.resize(256, 0);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &header));
    png.extend(png_chunk(b"IDAT", &idat));
    png.extend(png_chunk(b"IEND", &[]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.png");
    std::fs::write(&path, &png).unwrap();
    let error = error_with(&format!("image={}", path.display()));
    assert_mentions(
        &error,
        &["bomb.png", "too large", "40000x40000", "1600 megapixels"],
    );
}
