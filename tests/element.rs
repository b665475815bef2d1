//! Harness tests of the element's streaming behaviour: negotiation, the frame clock,
//! EOS, flushing, gaps and property changes while playing.

mod common;

use common::*;
use gst::prelude::*;
use gst_video::prelude::*;

const SMALL_RGBA: &str = "video/x-raw,format=RGBA,width=64,height=64,framerate=25/1";

/// Pushes a serialized marker event and waits until it comes out of the element: every
/// frame the audio pushed before it allows has been made by then.
fn wait_for_marker(h: &mut gst_check::Harness) {
    let marker = gst::Structure::new_empty("test-marker");
    assert!(h.push_event(gst::event::CustomDownstream::new(marker)));
    loop {
        let event = h.pull_event().expect("the marker comes out");
        if event.structure().is_some_and(|s| s.name() == "test-marker") {
            return;
        }
    }
}

fn caps_of(h: &mut gst_check::Harness) -> gst::Caps {
    h.sinkpad().unwrap().current_caps().expect("negotiated")
}

fn video_info(h: &mut gst_check::Harness) -> gst_video::VideoInfo {
    gst_video::VideoInfo::from_caps(&caps_of(h)).unwrap()
}

#[test]
fn unconstrained_downstream_gets_512x512_at_25fps() {
    let mut h = harness(&astronaut(), "video/x-raw");
    push_audio(&mut h, &test_tone(16_000), 0, 1600);
    h.push_event(gst::event::Eos::new());
    let buffers = pull_until_eos(&mut h);
    let info = video_info(&mut h);
    assert_eq!((info.width(), info.height()), (512, 512));
    assert_eq!(info.fps(), gst::Fraction::new(25, 1));
    assert_eq!(info.par(), gst::Fraction::new(1, 1));
    assert_eq!(info.format(), gst_video::VideoFormat::Rgba);
    assert_eq!(buffers.len(), 25);
    assert_eq!(buffers[0].size(), 512 * 512 * 4);
}

#[test]
fn fixation_takes_downstream_ranges_nearest_to_the_defaults() {
    let mut h = harness(
        &astronaut(),
        "video/x-raw,format=BGR,width=[100,200],height=720,framerate=[30/1,60/1]",
    );
    push_audio(&mut h, &test_tone(8_000), 0, 1600);
    h.push_event(gst::event::Eos::new());
    let buffers = pull_until_eos(&mut h);
    let info = video_info(&mut h);
    assert_eq!((info.width(), info.height()), (200, 720));
    assert_eq!(info.fps(), gst::Fraction::new(30, 1));
    assert_eq!(info.format(), gst_video::VideoFormat::Bgr);
    assert_eq!(buffers.len(), 15);
}

#[test]
fn every_output_format_carries_the_portrait_in_its_byte_order() {
    // A solid colour portrait makes the byte order visible.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orange.png");
    // The frame's own size, so that no bars are added.
    image::RgbImage::from_pixel(66, 64, image::Rgb([250, 120, 10]))
        .save(&path)
        .unwrap();
    let expected: [(&str, &[u8]); 6] = [
        ("RGBA", &[250, 120, 10, 255]),
        ("BGRA", &[10, 120, 250, 255]),
        ("RGBx", &[250, 120, 10, 255]),
        ("BGRx", &[10, 120, 250, 255]),
        ("RGB", &[250, 120, 10]),
        ("BGR", &[10, 120, 250]),
    ];
    for (format, pixel) in expected {
        // 66 px wide: RGB rows need padding to 4 bytes, which the element must respect.
        // A plain colour has no face to find: say where to put one.
        let mut h = harness_with(
            &path,
            &[("face-box", "20,20,24,24")],
            &format!("video/x-raw,format={format},width=66,height=64,framerate=25/1"),
        );
        push_audio(&mut h, &test_tone(640), 0, 640);
        h.push_event(gst::event::Eos::new());
        let buffers = pull_until_eos(&mut h);
        assert_eq!(buffers.len(), 1, "{format}");
        let info = video_info(&mut h);
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(&buffers[0], &info).unwrap();
        let stride = frame.plane_stride()[0] as usize;
        let data = frame.plane_data(0).unwrap();
        for (x, y) in [(0usize, 0usize), (65, 63), (33, 32)] {
            let at = y * stride + x * pixel.len();
            assert_eq!(&data[at..at + pixel.len()], pixel, "{format} at ({x},{y})");
        }
    }
}

#[test]
fn downstream_that_takes_no_rgb_is_a_negotiation_error() {
    init();
    let pipeline = launch(&format!(
        "audiotestsrc num-buffers=10 samplesperbuffer=1600 ! {AUDIO_CAPS} \
         ! vasafacegen image={} ! appsink name=sink",
        astronaut().display()
    ));
    // Restricted after linking, so the failure comes from the element's negotiation.
    let sink = pipeline.by_name("sink").unwrap();
    sink.set_property(
        "caps",
        "video/x-raw,format=I420".parse::<gst::Caps>().unwrap(),
    );
    let error = run_pipeline(&pipeline, std::time::Duration::from_secs(30)).expect("error");
    assert!(
        error.contains("not-negotiated") || error.contains("egotiat"),
        "{error}"
    );
}

/// ceil(T * fps) frames, PTS = first sample's PTS + n / fps, durations that tile.
fn check_frame_rule(seconds_x10: u64, fps: i32) {
    let samples = (seconds_x10 * RATE / 10) as usize;
    let start_ns = 1_000_000_000; // the stream does not start at zero
    let mut h = harness(
        &astronaut(),
        &format!("video/x-raw,format=RGBx,width=64,height=64,framerate={fps}/1"),
    );
    push_audio(&mut h, &test_tone(samples), start_ns, 1024);
    h.push_event(gst::event::Eos::new());
    let buffers = pull_until_eos(&mut h);
    let expected = (samples as u64 * fps as u64).div_ceil(RATE);
    assert_eq!(
        buffers.len() as u64,
        expected,
        "{seconds_x10}/10 s at {fps} fps"
    );
    for (n, buffer) in buffers.iter().enumerate() {
        let pts = start_ns + n as u64 * 1_000_000_000 / fps as u64;
        let next = start_ns + (n as u64 + 1) * 1_000_000_000 / fps as u64;
        assert_eq!(buffer.pts().unwrap().nseconds(), pts, "frame {n}");
        assert_eq!(
            buffer.duration().unwrap().nseconds(),
            next - pts,
            "frame {n}"
        );
        assert_eq!(buffer.offset(), n as u64);
    }
    assert!(buffers[0].flags().contains(gst::BufferFlags::DISCONT));
}

#[test]
fn frame_rule_1s_25fps() {
    check_frame_rule(10, 25);
}

#[test]
fn frame_rule_3_3s_25fps() {
    check_frame_rule(33, 25);
}

#[test]
fn frame_rule_10s_25fps() {
    check_frame_rule(100, 25);
}

#[test]
fn frame_rule_1s_30fps() {
    check_frame_rule(10, 30);
}

#[test]
fn frame_rule_3_3s_30fps() {
    check_frame_rule(33, 30);
}

#[test]
fn frame_rule_10s_30fps() {
    check_frame_rule(100, 30);
}

#[test]
fn frames_wait_for_lookahead_and_eos_flushes_the_rest() {
    let mut h = harness(&astronaut(), SMALL_RGBA);
    h.element().unwrap().set_property("latency", 200u32);
    // 1 s of audio: with 200 ms lookahead frames up to 0.8 s can be made...
    push_audio(&mut h, &test_tone(16_000), 0, 800);
    // A marker after the audio: the task forwards it in order, once it has made every
    // frame it can from the audio before it.
    wait_for_marker(&mut h);
    let mut early = Vec::new();
    while let Some(buffer) = h.try_pull() {
        early.push(buffer);
    }
    assert_eq!(early.len(), 20, "frames whose audio and lookahead are in");
    // ...and EOS brings the last 5.
    h.push_event(gst::event::Eos::new());
    let rest = pull_until_eos(&mut h);
    assert_eq!(rest.len(), 5);
    // Nothing after EOS: more audio is refused.
    assert_eq!(
        h.push(audio_buffer(&test_tone(1600), 2_000_000_000)),
        Err(gst::FlowError::Eos)
    );
    assert!(h.try_pull().is_none());
}

#[test]
fn a_gap_in_timestamps_becomes_frames_of_silence() {
    let mut h = harness(&astronaut(), SMALL_RGBA);
    let second = test_tone(16_000);
    push_audio(&mut h, &second, 0, 1600);
    // 2.5 s missing, then one more second.
    push_audio(&mut h, &second, 3_500_000_000, 1600);
    h.push_event(gst::event::Eos::new());
    let buffers = pull_until_eos(&mut h);
    assert_eq!(buffers.len(), 113); // 4.5 s at 25 fps = 112.5 -> 113
    for (n, buffer) in buffers.iter().enumerate() {
        assert_eq!(buffer.pts().unwrap().nseconds(), n as u64 * 40_000_000);
    }
}

#[test]
fn a_gap_event_becomes_frames_of_silence() {
    let mut h = harness(&astronaut(), SMALL_RGBA);
    push_audio(&mut h, &test_tone(16_000), 0, 1600);
    h.push_event(
        gst::event::Gap::builder(gst::ClockTime::from_seconds(1))
            .duration(gst::ClockTime::from_seconds(2))
            .build(),
    );
    push_audio(&mut h, &test_tone(8_000), 3_000_000_000, 1600);
    h.push_event(gst::event::Eos::new());
    let buffers = pull_until_eos(&mut h);
    assert_eq!(buffers.len(), 88); // 3.5 s at 25 fps = 87.5 -> 88
    assert_eq!(buffers[87].pts().unwrap().nseconds(), 87 * 40_000_000);
}

#[test]
fn a_stream_that_starts_with_a_gap_starts_its_video_there() {
    let mut h = harness(&astronaut(), SMALL_RGBA);
    h.push_event(
        gst::event::Gap::builder(gst::ClockTime::ZERO)
            .duration(gst::ClockTime::from_mseconds(500))
            .build(),
    );
    push_audio(&mut h, &test_tone(8_000), 500_000_000, 1600);
    h.push_event(gst::event::Eos::new());
    let buffers = pull_until_eos(&mut h);
    assert_eq!(buffers.len(), 25);
    assert_eq!(buffers[0].pts(), Some(gst::ClockTime::ZERO));
}

#[test]
fn small_timestamp_jitter_does_not_add_or_drop_frames() {
    let mut h = harness(&astronaut(), SMALL_RGBA);
    let tone = test_tone(16_000);
    for (i, chunk) in tone.chunks(1600).enumerate() {
        // +-3 ms of jitter around the true position, as some capture sources produce.
        let jitter: i64 = if i % 2 == 0 { 3_000_000 } else { -3_000_000 };
        let pts = (i as i64 * 100_000_000 + jitter).max(0) as u64;
        h.push(audio_buffer(chunk, pts)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    assert_eq!(pull_until_eos(&mut h).len(), 25);
}

#[test]
fn flush_and_new_segment_restart_the_clock() {
    let mut h = harness(&astronaut(), SMALL_RGBA);
    push_audio(&mut h, &test_tone(16_000), 0, 1600);
    // Wait for some output, then seek-like flush.
    let first = h.pull().expect("a frame before the flush");
    assert_eq!(first.pts(), Some(gst::ClockTime::ZERO));
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    while h.try_pull().is_some() {}
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::from_seconds(10));
    segment.set_time(gst::ClockTime::from_seconds(10));
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    push_audio(&mut h, &test_tone(8_000), 10_000_000_000, 1600);
    h.push_event(gst::event::Eos::new());
    let after = pull_until_eos(&mut h);
    assert_eq!(after.len(), 13); // 0.5 s -> 12.5 -> 13, nothing left over from before
    assert_eq!(after[0].pts().unwrap().nseconds(), 10_000_000_000);
    assert_eq!(
        after[12].pts().unwrap().nseconds(),
        10_000_000_000 + 12 * 40_000_000
    );
}

#[test]
fn a_new_segment_without_flush_finishes_the_old_one_first() {
    let mut h = harness(&astronaut(), SMALL_RGBA);
    push_audio(&mut h, &test_tone(5_000), 0, 1000); // 0.3125 s -> 8 frames
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::from_seconds(5));
    segment.set_base(gst::ClockTime::from_mseconds(320));
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    push_audio(&mut h, &test_tone(4_000), 5_000_000_000, 1000); // 0.25 s -> 7 frames
    h.push_event(gst::event::Eos::new());
    let buffers = pull_until_eos(&mut h);
    assert_eq!(buffers.len(), 8 + 7);
    assert_eq!(buffers[7].pts().unwrap().nseconds(), 7 * 40_000_000);
    assert_eq!(buffers[8].pts().unwrap().nseconds(), 5_000_000_000);
}

#[test]
fn audio_outside_the_segment_is_clipped() {
    let mut h = gst_check::Harness::with_element(
        &{
            init();
            gst::ElementFactory::make("vasafacegen")
                .property("image", astronaut().to_str().unwrap())
                .property_from_str("pace", "audio")
                .build()
                .unwrap()
        },
        Some("sink"),
        Some("src"),
    );
    h.set_live(false);
    h.set_sink_caps_str(SMALL_RGBA);
    h.play();
    h.push_event(gst::event::StreamStart::new("clip"));
    h.push_event(gst::event::Caps::new(
        &AUDIO_CAPS.parse::<gst::Caps>().unwrap(),
    ));
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::from_mseconds(500));
    h.push_event(gst::event::Segment::new(&segment));
    // Audio from 0 to 1 s; only 0.5..1 s is in the segment.
    push_audio(&mut h, &test_tone(16_000), 0, 4000);
    h.push_event(gst::event::Eos::new());
    let buffers = pull_until_eos(&mut h);
    assert_eq!(buffers.len(), 13);
    assert_eq!(buffers[0].pts().unwrap().nseconds(), 500_000_000);
}

#[test]
fn float_audio_is_accepted() {
    let mut h = harness(&astronaut(), SMALL_RGBA);
    h.set_src_caps_str("audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved");
    let samples: Vec<u8> = (0..16_000)
        .flat_map(|i| ((i as f32 * 0.05).sin() * 0.3).to_le_bytes())
        .collect();
    let mut buffer = gst::Buffer::from_mut_slice(samples);
    buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    h.push(buffer).unwrap();
    h.push_event(gst::event::Eos::new());
    assert_eq!(pull_until_eos(&mut h).len(), 25);
}

#[test]
fn changing_the_image_while_playing_switches_at_a_frame_boundary_without_stalling() {
    let dir = tempfile::tempdir().unwrap();
    // The same person, tinted red: the background shows which portrait is on screen.
    let red = dir.path().join("red.png");
    let mut tinted = image::open(astronaut()).unwrap().to_rgb8();
    for pixel in tinted.pixels_mut() {
        pixel.0 = [pixel.0[0], pixel.0[1] / 3, pixel.0[2] / 3];
    }
    tinted.save(&red).unwrap();
    let mut h = harness(&astronaut(), SMALL_RGBA);
    let element = h.element().unwrap();
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgba, 64, 64)
        .build()
        .unwrap();
    // The backdrop at the top right, far from the face.
    let shows_red = |buffer: &gst::Buffer| {
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).unwrap();
        let at = 4 * frame.plane_stride()[0] as usize + 60 * 4;
        let pixel = &frame.plane_data(0).unwrap()[at..at + 3];
        i32::from(pixel[0]) - i32::from(pixel[1]) > 60
    };
    let tone = test_tone(16_000);
    let mut frames = Vec::new();
    let mut pts = 0;
    let started = std::time::Instant::now();
    // Keep audio flowing the whole time (never waiting for the new portrait: the
    // element must not stall); switch after the first second, then go on until the new
    // portrait has shown up (preparing it takes as long as the machine needs) and one
    // more second after that.
    let mut second = 0u64;
    let mut seconds_after_switch = None;
    while seconds_after_switch != Some(2) && started.elapsed() < std::time::Duration::from_secs(60)
    {
        if second == 1 {
            element.set_property("image", red.to_str().unwrap());
        }
        for chunk in tone.chunks(1600) {
            h.push(audio_buffer(chunk, pts)).unwrap();
            pts += 100_000_000;
            while let Some(buffer) = h.try_pull() {
                frames.push(buffer);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        second += 1;
        if let Some(n) = seconds_after_switch.as_mut() {
            *n += 1;
        } else if frames.iter().any(shows_red) {
            seconds_after_switch = Some(0);
        }
    }
    h.push_event(gst::event::Eos::new());
    frames.extend(pull_until_eos(&mut h));
    assert_eq!(
        frames.len() as u64,
        second * 25,
        "no frame lost or added by the switch"
    );
    let first_red = frames
        .iter()
        .position(shows_red)
        .expect("the new portrait appears");
    assert!(
        first_red >= 20,
        "switched before it was asked for: {first_red}"
    );
    assert!(
        frames[first_red..].iter().all(shows_red),
        "once switched, every frame shows the new portrait"
    );
    // Timestamps stay continuous across the switch.
    for (n, buffer) in frames.iter().enumerate() {
        assert_eq!(buffer.pts().unwrap().nseconds(), n as u64 * 40_000_000);
    }
}

#[test]
fn a_bad_image_while_playing_warns_and_keeps_the_old_portrait() {
    init();
    let pipeline = launch(&format!(
        "audiotestsrc num-buffers=60 samplesperbuffer=800 ! {AUDIO_CAPS} \
         ! vasafacegen name=face image={} ! {SMALL_RGBA} ! fakesink sync=false",
        astronaut().display()
    ));
    let face = pipeline.by_name("face").unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    face.set_property("image", "/nonexistent/portrait.png");
    let mut warning = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match message.view() {
            gst::MessageView::Warning(w) => warning = Some(w.error().to_string()),
            gst::MessageView::Error(e) => panic!("error instead of a warning: {}", e.error()),
            gst::MessageView::Eos(_) => break,
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let warning = warning.expect("a warning");
    assert!(warning.contains("/nonexistent/portrait.png"), "{warning}");
    assert!(
        warning.contains("keeping the previous portrait"),
        "{warning}"
    );
    assert_eq!(face.property::<u64>("frames-produced"), 75);
}

#[test]
fn latency_query_adds_lookahead_and_two_frame_periods() {
    let h = harness(&astronaut(), SMALL_RGBA);
    h.element().unwrap().set_property("latency", 150u32);
    // The harness src answers latency queries with its own (live, 0).
    let mut query = gst::query::Latency::new();
    assert!(h.sinkpad().unwrap().peer_query(&mut query));
    let (_live, min, _max) = query.result();
    assert_eq!(min, gst::ClockTime::from_mseconds(150 + 80));
}

#[test]
fn latency_message_is_posted_when_lookahead_changes() {
    init();
    let pipeline = launch(&format!(
        "audiotestsrc is-live=true samplesperbuffer=160 ! {AUDIO_CAPS} \
         ! vasafacegen name=face image={} ! {SMALL_RGBA} ! fakesink",
        astronaut().display()
    ));
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    // Wait until running, then change the lookahead.
    let _ = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(20),
        &[gst::MessageType::AsyncDone],
    );
    while bus.pop_filtered(&[gst::MessageType::Latency]).is_some() {}
    let face = pipeline.by_name("face").unwrap();
    face.set_property("latency", 300u32);
    let message = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(5),
        &[gst::MessageType::Latency],
    );
    assert!(message.is_some(), "no latency message");
    // What the element now reports: live (as upstream) with the new lookahead.
    let mut query = gst::query::Latency::new();
    assert!(face.static_pad("src").unwrap().query(&mut query));
    let (live, min, _) = query.result();
    assert!(live);
    assert!(min >= gst::ClockTime::from_mseconds(380), "{min}");
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn statistics_count_frames_and_time() {
    let mut h = harness(&astronaut(), SMALL_RGBA);
    push_audio(&mut h, &test_tone(16_000), 0, 1600);
    h.push_event(gst::event::Eos::new());
    assert_eq!(pull_until_eos(&mut h).len(), 25);
    let element = h.element().unwrap();
    assert_eq!(element.property::<u64>("frames-produced"), 25);
    let mean: f64 = element.property("mean-generation-ms");
    let max: f64 = element.property("max-generation-ms");
    assert!(mean > 0.0 && max >= mean, "mean {mean} max {max}");
    assert_eq!(
        element
            .property::<Option<String>>("active-device")
            .as_deref(),
        Some("cpu")
    );
}

#[test]
fn backpressure_bounds_the_queue() {
    // A downstream that never takes a frame: the element must block upstream instead of
    // swallowing all audio.
    init();
    let pipeline = launch(&format!(
        "appsrc name=src format=time caps={AUDIO_CAPS} block=false \
         ! vasafacegen image={} ! {SMALL_RGBA} ! appsink name=sink sync=false max-buffers=1 drop=false",
        astronaut().display()
    ));
    let appsrc = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    // 20 s of audio offered at once; appsrc's own queue holds what we hold back.
    let tone = test_tone(1600);
    for i in 0..200u64 {
        let _ = appsrc.push_buffer(audio_buffer(&tone, i * 100_000_000));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let queued_in_appsrc = appsrc.current_level_bytes();
    pipeline.set_state(gst::State::Null).unwrap();
    // The element took at most its queue (0.5 s) + lookahead + what a few frames need:
    // the rest waits upstream.
    let taken_seconds = 20.0 - queued_in_appsrc as f64 / 32_000.0;
    assert!(
        taken_seconds < 2.0,
        "element swallowed {taken_seconds} s of audio"
    );
}

#[test]
fn downstream_renegotiating_the_frame_rate_mid_stream_drops_and_doubles_nothing() {
    let mut h = harness(
        &astronaut(),
        "video/x-raw,format=RGBA,width=64,height=64,framerate=25/1",
    );
    let tone = test_tone(16_000);
    // 0.5 s: with the default 100 ms lookahead, the first 10 frames can be made.
    push_audio(&mut h, &tone[..8_000], 0, 800);
    wait_for_marker(&mut h);
    let mut frames: Vec<gst::Buffer> = (0..10).map(|_| h.pull().unwrap()).collect();
    assert!(h.try_pull().is_none());
    assert_eq!(video_info(&mut h).fps(), gst::Fraction::new(25, 1));
    // Downstream now wants 30 fps: the rest of the stream comes at that rate.
    h.set_sink_caps_str("video/x-raw,format=RGBA,width=64,height=64,framerate=30/1");
    push_audio(&mut h, &tone[8_000..], 500_000_000, 800);
    h.push_event(gst::event::Eos::new());
    frames.extend(pull_until_eos(&mut h));
    assert_eq!(video_info(&mut h).fps(), gst::Fraction::new(30, 1));
    // 0.4 s at 25 fps, then the remaining 0.6 s at 30 fps: 10 + 18 frames.
    assert_eq!(frames.len(), 28);
    for (i, pair) in frames.windows(2).enumerate() {
        let end = pair[0].pts().unwrap() + pair[0].duration().unwrap();
        assert_eq!(end, pair[1].pts().unwrap(), "frame {i} to {}", i + 1);
        assert_eq!(pair[0].offset() + 1, pair[1].offset());
    }
    assert_eq!(frames[9].duration().unwrap().nseconds(), 40_000_000);
    assert_eq!(frames[10].pts().unwrap().nseconds(), 400_000_000);
    assert_eq!(frames[10].duration().unwrap().nseconds(), 33_333_333);
    let last = frames.last().unwrap();
    assert_eq!(
        (last.pts().unwrap() + last.duration().unwrap()).nseconds(),
        1_000_000_000
    );
}
