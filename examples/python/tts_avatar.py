#!/usr/bin/python3
"""A text-to-speech agent with a talking avatar, in the way a live app drives vasafacegen.

The agent speaks a few sentences with espeak-ng, pushing its audio into an appsrc in
real time and only while it speaks (as TTS agents and WebRTC with DTX do), with pauses
in between; one sentence is cut short, as when the user interrupts (barge-in). The
avatar keeps moving in the pauses and its lips close as soon as the speech is cut.

    GST_PLUGIN_PATH=target/release /usr/bin/python3 examples/python/tts_avatar.py
    GST_PLUGIN_PATH=target/release /usr/bin/python3 examples/python/tts_avatar.py --out avatar.mp4

Without --out it shows the avatar in a window and plays the speech; with --out it
writes an MP4 with both. At the end it prints one JSON object that says what the
avatar did: its frames, the timeline of the speech, and the mouth opening per phase
(read from the VasaFaceGenFrameMeta each frame carries).

Needs the system python with python3-gi, espeak-ng, and the plugin on GST_PLUGIN_PATH.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import wave

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What the agent says: (text, pause after it in seconds, share of it spoken before the
# user interrupts, or None to say it all).
SCRIPT = [
    ("Hello, I am your virtual presenter.", 1.0, None),
    ("Let me tell you a very long story about the history of the moon landing.", 0.8, 0.45),
    ("Of course, go ahead, I am listening.", 0.0, None),
]
CHUNK_SECONDS = 0.02


def speak(text, voice):
    """Speech for `text` from espeak-ng: (sample rate, S16LE mono bytes)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav_file:
        try:
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", "165", "-w", wav_file.name, text],
                check=True,
                capture_output=True,
            )
        except FileNotFoundError:
            sys.exit("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
        with wave.open(wav_file.name) as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                sys.exit("espeak-ng gave audio that is not 16-bit mono")
            return wav.getframerate(), wav.readframes(wav.getnframes())


def build_pipeline(args, rate):
    speech_caps = f"audio/x-raw,format=S16LE,rate={rate},channels=1,layout=interleaved"
    video = f"video/x-raw,width={args.size},height={args.size},framerate={args.fps}/1"
    avatar = (
        f"appsrc name=speech is-live=true format=time do-timestamp=true caps={speech_caps} "
        "! tee name=t "
        "t. ! queue ! audioconvert ! audioresample ! audio/x-raw,rate=16000,channels=1 "
        f"! vasafacegen name=avatar image={args.image} latency={args.latency} "
        f"! {video} ! videoconvert ! video/x-raw,format=I420 "
    )
    if args.out:
        return Gst.parse_launch(
            avatar
            + "! x264enc tune=zerolatency speed-preset=ultrafast ! queue "
            + f"! mp4mux name=mux ! filesink location={args.out} "
            # The agent sends nothing in its pauses; the file's audio track is whole.
            + "t. ! queue ! audiorate ! audioconvert ! avenc_aac ! queue ! mux."
        )
    return Gst.parse_launch(
        avatar + "! autovideosink t. ! queue ! audioconvert ! audioresample ! autoaudiosink"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=os.path.join(REPO, "assets", "astronaut.png"))
    parser.add_argument("--out", help="write an MP4 here instead of showing a window")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--latency", type=int, default=100, help="vasafacegen latency, ms")
    parser.add_argument("--voice", default="en-us")
    parser.add_argument("--lead-in", type=float, default=0.5,
                        help="seconds between PLAYING and the first word")
    args = parser.parse_args()

    Gst.init(None)
    if Gst.ElementFactory.find("vasafacegen") is None:
        sys.exit("vasafacegen not found: set GST_PLUGIN_PATH to the directory of "
                 "libgstvasafacegen.so (target/release after `make build`)")
    speech = [speak(text, args.voice) for text, _, _ in SCRIPT]
    rate = speech[0][0]
    pipeline = build_pipeline(args, rate)
    appsrc = pipeline.get_by_name("speech")
    avatar = pipeline.get_by_name("avatar")

    frames = []  # (pts s, mouth-open, audio-missing) of every frame the avatar made

    def on_frame(_pad, info):
        buffer = info.get_buffer()
        meta = buffer.get_custom_meta("VasaFaceGenFrameMeta")
        notes = meta.get_structure()
        frames.append((buffer.pts / Gst.SECOND, notes.get_value("mouth-open"),
                       notes.get_value("audio-missing")))
        return Gst.PadProbeReturn.OK

    avatar.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_frame)

    errors = []
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    clock_ready = threading.Event()

    def running_time():
        clock = pipeline.get_clock()
        return (clock.get_time() - pipeline.get_base_time()) / Gst.SECOND

    # The agent: speaks in real time, 20 ms at a time, silent in its pauses.
    timeline = {"speech": [], "cut_at": None}

    def agent():
        clock_ready.wait()
        time.sleep(args.lead_in)
        for (text, pause, cut_share), (_, pcm) in zip(SCRIPT, speech):
            chunk = int(rate * CHUNK_SECONDS) * 2
            end = len(pcm) if cut_share is None else int(len(pcm) * cut_share) // 2 * 2
            start_time = running_time()
            due = time.monotonic()
            for offset in range(0, end, chunk):
                appsrc.emit("push-buffer", Gst.Buffer.new_wrapped(pcm[offset:offset + chunk]))
                due += CHUNK_SECONDS
                time.sleep(max(0.0, due - time.monotonic()))
            timeline["speech"].append([start_time, running_time()])
            if cut_share is not None:
                # Barge-in: stop feeding and tell the avatar the speech is cut.
                timeline["cut_at"] = running_time()
                avatar.emit("interrupt")
            time.sleep(pause)
        appsrc.emit("end-of-stream")

    # The agent starts once the pipeline plays: its clock runs from then on.
    deadline = time.monotonic() + 10
    while pipeline.get_clock() is None:
        message = bus.pop_filtered(Gst.MessageType.ERROR)
        if message is not None or time.monotonic() > deadline:
            reason = message.parse_error()[0].message if message else "no clock within 10 s"
            pipeline.set_state(Gst.State.NULL)
            sys.exit(f"the pipeline did not start: {reason}")
        time.sleep(0.01)
    clock_ready.set()
    speaker = threading.Thread(target=agent, daemon=True)
    speaker.start()

    message = bus.timed_pop_filtered(
        120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    if message is None:
        errors.append("no end of stream within 120 s")
    elif message.type == Gst.MessageType.ERROR:
        err, debug = message.parse_error()
        errors.append(f"{err.message} ({debug})")
    pipeline.set_state(Gst.State.NULL)
    if errors:
        sys.exit("; ".join(errors))

    period = 1.0 / args.fps
    contiguous = all(abs(b[0] - a[0] - period) < 1e-6 for a, b in zip(frames, frames[1:]))
    speech_spans = timeline["speech"]
    pauses = [[a[1], b[0]] for a, b in zip(speech_spans, speech_spans[1:])]
    rest_after = 0.12  # the lips rest within 120 ms of the end of speech or of a cut
    cut_index = next(i for i, (_, _, cut) in enumerate(SCRIPT) if cut is not None)

    def max_mouth(start, end):
        """The widest mouth of the frames wholly inside [start, end)."""
        values = [m for pts, m, _ in frames if start <= pts and pts + period <= end]
        return max(values) if values else None

    report = {
        "frames": len(frames),
        "first_pts": frames[0][0] if frames else None,
        "end_pts": frames[-1][0] + period if frames else None,
        "contiguous": contiguous,
        "frames_without_audio": sum(1 for f in frames if f[2]),
        "speech": speech_spans,
        "pauses": pauses,
        "cut_at": timeline["cut_at"],
        "frames_in_pauses": [sum(1 for f in frames if s <= f[0] < e) for s, e in pauses],
        "mouth_max_in_speech": max(
            (max_mouth(s, e) or 0.0) for s, e in speech_spans),
        "mouth_max_in_pauses": max(
            (max_mouth(s + rest_after, e) or 0.0) for s, e in pauses),
        "mouth_max_after_cut": max_mouth(timeline["cut_at"] + rest_after,
                                         pauses[cut_index][1]),
        "late_audio_dropped_ns": avatar.get_property("late-audio-dropped"),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
