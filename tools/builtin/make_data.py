#!/usr/bin/env python3
"""Makes the training and evaluation audio for the builtin engine's mouth model.

Speech comes from Debian's text-to-speech voices, with the timing of every phone:
  * espeak-ng (through libespeak-ng's C API, which reports phoneme events with their
    sample positions), several accents, voice variants, speaking rates and pitches;
  * festival (the kal and ked English diphone voices, the CMU SLT English HTS voice, the
    Catalan HTS voice ona and the Italian diphone voices lp and pc), whose segment
    relation gives each phone's end time.
Phones are mapped to one ARPAbet-like inventory (the trainer maps them to mouth shapes).

Besides speech: synthetic sung vowels (formant synthesis, held notes with vibrato) and
instrumental music (plucked strings, organ-like and square-wave melodies, drums), so the
model learns that sung vowels keep the mouth open and music without a voice does not
move it; evaluation uses festival's own singing mode and a different instrument set.

Voices held out of training (evaluation only): festival CMU SLT (HTS), espeak-ng
en-gb-scotland with the f4 variant, and 25 s of human read speech with forced phone
alignments (tools/builtin/human-speech/, copied in as the voice librivox-human).

Everything is deterministic for a seed. Standard library only (plus the espeak-ng,
festival and sox programs from Debian, installed by scripts/setup.sh --with-tts).

Usage: make_data.py OUT_DIR [--seed N] [--quick]
"""

import argparse
import ctypes
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
import wave

RATE = 16000

# ---------------------------------------------------------------- sentences

SUBJECTS = [
    "my brother", "the pilot", "a happy baby", "the mayor", "our new member", "the old man",
    "a busy mother", "the people", "my best friend", "the boss", "Peter", "Mabel", "Bob",
    "the map maker", "a young woman", "the team", "every pupil", "the bank manager",
    "the police", "my uncle", "Emma", "the farmer", "a small boy", "the doctor",
]
VERBS = [
    "bought", "brought", "built", "moved", "painted", "opened", "measured", "borrowed",
    "played", "bumped into", "published", "remembered", "picked up", "maybe saw",
    "found", "cooked", "washed", "wrote about", "fixed", "sold", "threw", "showed us",
    "looked at", "pushed", "believed", "described", "ate", "heard",
]
OBJECTS = [
    "a blue bottle", "the purple map", "some maple syrup", "a big apple pie", "the broken pump",
    "a bamboo boat", "the umbrella", "a warm meal", "the empty box", "a number of books",
    "the mobile phone", "a lamp", "the museum poster", "five cheap plums", "the bubble bath",
    "a simple puzzle", "the harbour", "an orange", "the shoe", "a thousand letters",
    "the window", "a yellow jacket", "the machine", "a cup of tea", "the garden gate",
]
ENDINGS = [
    "before the meeting", "by the beach", "at midnight", "in the morning", "this summer",
    "without a problem", "near the bus stop", "on Monday", "up in the mountains",
    "because it was important", "with a smile", "for my mother", "at the museum",
    "after lunch", "in the rain", "under the bridge", "every week", "quite happily",
]
QUESTIONS = [
    "Would you please pass the pepper?", "Is the bus bigger than the boat?",
    "Why do people move to the big city?", "How much money might we make?",
    "Who brought the purple balloons?", "What time does the movie begin?",
    "Can you imagine a better moment?", "Where were you on Wednesday?",
]
EXCLAMATIONS = [
    "Oh my, that was amazing!", "Wow, what a beautiful view!", "Hooray, we made it!",
    "Oops, I dropped the bowl!", "Well, maybe, but probably not.", "Yes, of course!",
    "Aha, I knew it!", "Hmm, let me think about it.",
]


# Catalan, for the one other HTS voice Debian has (upc_ca_ona_hts): it brings the HTS
# vocoder's sound into training while the English HTS voice stays held out.
CA_SUBJECTS = ["La meva mare", "El pare", "La Maria", "En Pau", "El meu amic", "La mestra",
               "Un home", "La botiguera", "El metge", "Les nenes", "El pilot", "La Berta"]
CA_VERBS = ["menja", "compra", "porta", "mira", "busca", "pinta", "obre", "prepara",
            "troba", "vol", "beu", "pren"]
CA_OBJECTS = ["pa amb tomàquet", "una poma madura", "el mapa del poble", "una ampolla d'aigua",
              "música moderna", "un mòbil nou", "les maduixes", "el paper blanc", "una bota",
              "molts llibres", "la barca", "un plat de sopa"]
CA_ENDINGS = ["cada matí", "a la platja", "amb molta calma", "abans de dinar", "a la plaça",
              "per la mare", "sempre", "a Barcelona", "el dimarts", "amb un somriure"]


# Italian, for two more recorded (diphone) voices, one of them female, with bilabials
# that are always full closures, /b/ voiced through its closure as in HTS English.
# ASCII only: festival's Italian front end reads bytes.
IT_SUBJECTS = ["La mamma", "Il babbo", "Mio fratello", "La maestra", "Il medico",
               "Una bambina", "Il postino", "La nonna", "Il pilota", "Paolo", "Beatrice",
               "Il mio amico"]
IT_VERBS = ["compra", "porta", "mangia", "prepara", "guarda", "cerca", "prende", "beve",
            "apre", "dipinge", "trova", "vuole"]
IT_OBJECTS = ["una mela matura", "il pane bianco", "la mappa del paese",
              "una bottiglia d'acqua", "un bel libro", "le patate", "il pomodoro",
              "una borsa blu", "molte banane", "la barca", "un piatto di minestra",
              "il primo premio"]
IT_ENDINGS = ["ogni mattina", "in spiaggia", "con molta calma", "prima di pranzo",
              "in piazza", "per la mamma", "sempre", "a Bologna", "dopo la pioggia",
              "con un sorriso", "sabato sera", "dopo il lavoro"]


def phrase_sentences(rng, count, subjects, verbs, objects, endings):
    out = []
    for _ in range(count):
        text = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}"
        if rng.random() < 0.7:
            text += f" {rng.choice(endings)}"
        out.append(text + ".")
    return out


def catalan_sentences(rng, count):
    return phrase_sentences(rng, count, CA_SUBJECTS, CA_VERBS, CA_OBJECTS, CA_ENDINGS)


def sentences(rng, count):
    out = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.12:
            out.append(rng.choice(QUESTIONS))
        elif kind < 0.2:
            out.append(rng.choice(EXCLAMATIONS))
        else:
            text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
            if rng.random() < 0.7:
                text += f" {rng.choice(ENDINGS)}"
            if rng.random() < 0.3:
                text += f", and {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
            out.append(text[0].upper() + text[1:] + ".")
    return out


# ---------------------------------------------------------------- phone inventory

# espeak-ng English phoneme mnemonics -> ARPAbet-like names.
ESPEAK = {
    "@": "ax", "@2": "ax", "@5": "ax", "a#": "ax", "3": "ax", "@L": "el", "3:": "er",
    "a": "ae", "aa": "aa", "A:": "aa", "A@": "aa", "A": "aa", "aI": "ay", "aI@": "ay",
    "aI3": "ay", "aU": "aw", "aU@": "aw", "e": "eh", "E": "eh", "E2": "eh", "E3": "eh",
    "e@": "eh", "eI": "ey", "i": "iy", "i:": "iy", "i@": "iy", "i@3": "iy", "I": "ih",
    "I2": "ih", "I#": "ih", "0": "ao", "O": "ao", "O:": "ao", "O@": "ao", "o@": "ao",
    "0@": "ao", "OI": "oy", "oU": "ow", "@U": "ow", "o": "ow", "u:": "uw", "u": "uw",
    "u@": "uw", "U@": "uw", "U": "uh", "V": "ah", "p": "p", "b": "b", "t": "t", "d": "d",
    "k": "k", "g": "g", "f": "f", "v": "v", "T": "th", "D": "dh", "s": "s", "z": "z",
    "S": "sh", "Z": "zh", "tS": "ch", "dZ": "jh", "m": "m", "n": "n", "N": "ng", "l": "l",
    "l/": "l", "r": "r", "r-": "r", "w": "w", "j": "y", "h": "hh", "t2": "dx", "d2": "dx",
    "t#": "t", "n-": "n", "m-": "m", "?": "t", "x": "k", "C": "hh", "W": "w",
    # Accent variants seen in en-029, en-us-nyc, en-gb-x-* and en-gb-scotland.
    "O2": "ao", "VR": "er", "aI2": "ay", "t[": "t", "w#": "w",
}
# festival phone sets (radio, cmu, upc_catalan) -> the same names.
FESTIVAL_ALIASES = {"axr": "er", "hv": "hh", "nx": "n", "em": "m", "en": "n",
                    "h#": "pau", "brth": "pau", "sil": "pau"}
# Catalan /b v/ are stops (lips closed) after a pause or a nasal, approximants ("bh")
# elsewhere; read_segs applies that rule.
CATALAN = {"a": "aa", "e": "ey", "E": "eh", "i": "iy", "o": "ow", "O": "ao", "u": "uw",
           "ax": "ax", "p": "p", "m": "m", "b": "bh", "v": "bh", "t": "t", "d": "d",
           "k": "k", "g": "g", "f": "f", "s": "s", "z": "z", "S": "sh", "Z": "zh",
           "tS": "ch", "dZ": "jh", "l": "l", "L": "l", "n": "n", "J": "n", "N": "ng",
           "r": "r", "rr": "r", "j": "y", "w": "w", "pau": "pau", "_": "pau", "#": "pau"}
ITALIAN = {"a": "aa", "e": "ey", "E": "eh", "i": "iy", "o": "ow", "O": "ao", "u": "uw",
           "j": "y", "w": "w", "p": "p", "t": "t", "k": "k", "b": "b", "d": "d", "g": "g",
           "f": "f", "s": "s", "S": "sh", "v": "v", "z": "z", "Z": "zh", "ts": "s",
           "tS": "ch", "dz": "z", "dZ": "jh", "m": "m", "n": "n", "J": "n", "ng": "ng",
           "nf": "f", "l": "l", "L": "l", "r": "r", "#": "pau", "pau": "pau", "_": "pau"}
INVENTORY = {
    "aa", "ae", "ah", "ao", "aw", "ax", "ay", "eh", "el", "er", "ey", "ih", "iy", "ow",
    "oy", "uh", "uw", "p", "b", "t", "d", "dx", "k", "g", "f", "v", "th", "dh", "s", "z",
    "sh", "zh", "ch", "jh", "m", "n", "ng", "l", "r", "w", "y", "hh", "pau",
    # Catalan /b v/ between vowels: lips approach without closing.
    "bh",
}


def espeak_phone(mnemonic):
    """The phone for an espeak-ng mnemonic; None for marks that are no sound of their own
    (stress, syllable and linking marks), whose time belongs to the phone before."""
    if mnemonic.startswith("_"):
        return "pau"
    if mnemonic in ESPEAK:
        return ESPEAK[mnemonic]
    # Stress and length marks vary; try without them.
    stripped = mnemonic.strip("'\",%=;:!^#")
    if stripped in ESPEAK:
        return ESPEAK[stripped]
    if not any(c.isalnum() or c == "@" for c in mnemonic):
        return None
    raise KeyError(f"unmapped espeak-ng phoneme {mnemonic!r}")


# Phone sets of the non-English festival voices, by language.
LANGUAGE_PHONES = {"catalan": CATALAN, "italian": ITALIAN}


def festival_phone(name, language=None):
    if language is not None:
        base = name.rstrip("0123456789")
        if base not in LANGUAGE_PHONES[language]:
            raise KeyError(f"unmapped {language} phone {name!r}")
        return LANGUAGE_PHONES[language][base]
    name = FESTIVAL_ALIASES.get(name, name)
    if name not in INVENTORY:
        raise KeyError(f"unmapped festival phone {name!r}")
    return name


# ---------------------------------------------------------------- audio helpers

def write_wav(path, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(struct.pack("<h", max(-32768, min(32767, int(s)))) for s in samples))


def resample_to_16k(src, dst):
    # -D: no dither (sox dithers with a random seed otherwise; the data must be repeatable).
    subprocess.run(["sox", "-D", src, "-r", str(RATE), "-c", "1", "-b", "16", dst],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pad_silence(path, seconds_before, seconds_after):
    tmp = path + ".pad.wav"
    subprocess.run(["sox", "-D", path, tmp, "pad", str(seconds_before), str(seconds_after)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.replace(tmp, path)


def duration(path):
    with wave.open(path, "rb") as w:
        return w.getnframes() / w.getframerate()


# ---------------------------------------------------------------- espeak-ng

class EspeakEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


class Espeak:
    # espeak-ng reports phoneme events about 30 ms after the sound they label: the
    # energy minimum of /p b m/ lies 30 ms before the reported centre for every English
    # voice here, where festival's labels sit within 10 ms of it (measured with
    # tools/builtin/check_alignment.py). Events are moved back by this much.
    EVENT_DELAY_S = 0.030
    OUTPUT_SYNCHRONOUS = 2
    INITIALIZE_PHONEME_EVENTS = 1
    EVENT_END_OF_LIST = 0
    EVENT_PHONEME = 7
    RATE, PITCH, RANGE = 1, 3, 4
    CHARS_UTF8 = 1
    POS_CHARACTER = 1

    def __init__(self):
        self.lib = ctypes.CDLL("libespeak-ng.so.1")
        self.rate = self.lib.espeak_Initialize(self.OUTPUT_SYNCHRONOUS, 0, None,
                                               self.INITIALIZE_PHONEME_EVENTS)
        if self.rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short),
                                         ctypes.c_int, ctypes.POINTER(EspeakEvent))
        self.callback = callback_type(self._on_audio)
        self.lib.espeak_SetSynthCallback(self.callback)
        self.samples, self.events = [], []

    def _on_audio(self, wav, count, events):
        if wav and count > 0:
            self.samples.extend(wav[:count])
        i = 0
        while events[i].type != self.EVENT_END_OF_LIST:
            if events[i].type == self.EVENT_PHONEME:
                self.events.append((events[i].id.decode("latin1"), events[i].sample))
            i += 1
        return 0

    def say(self, text, voice, rate, pitch, pitch_range):
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice}")
        self.lib.espeak_SetParameter(self.RATE, rate, 0)
        self.lib.espeak_SetParameter(self.PITCH, pitch, 0)
        self.lib.espeak_SetParameter(self.RANGE, pitch_range, 0)
        self.samples, self.events = [], []
        data = text.encode("utf-8")
        self.lib.espeak_Synth(data, len(data) + 1, 0, self.POS_CHARACTER, 0, self.CHARS_UTF8,
                              None, None)
        self.lib.espeak_Synchronize()
        # Phoneme events mark starts; each phone ends where the next begins.
        phones = []
        starts = self.events + [("_", len(self.samples))]
        delay = int(self.EVENT_DELAY_S * self.rate)
        for (name, start), (_, end) in zip(starts, starts[1:]):
            if end <= start:
                continue
            # The last phone still ends with the audio.
            start = max(0, start - delay)
            end = end - delay if end < len(self.samples) else end
            phone = espeak_phone(name)
            if phone is None and phones:
                phones[-1][2] = end / self.rate
            elif phone is not None:
                phones.append([phone, start / self.rate, end / self.rate])
        return self.samples, phones


# ---------------------------------------------------------------- festival

def festival_batch(jobs, workdir):
    """jobs: [(voice, stretch, text, wav_path, segs_path)] -> runs one festival process."""
    script = []
    for voice, stretch, text, wav_path, segs_path in jobs:
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        script.append(f"(voice_{voice})")
        script.append(f"(Parameter.set 'Duration_Stretch {stretch})")
        script.append(f'(set! u (utt.synth (Utterance Text "{quoted}")))')
        script.append(f'(utt.save.wave u "{wav_path}" \'riff)')
        script.append(f'(utt.save.segs u "{segs_path}")')
    path = os.path.join(workdir, "batch.scm")
    with open(path, "w") as f:
        f.write("\n".join(script) + "\n")
    subprocess.run(["festival", "-b", path], check=True, stdout=subprocess.DEVNULL)


def read_segs(path, language=None):
    phones, previous_end = [], 0.0
    with open(path) as f:
        body = f.read().split("#", 1)[1]
    for line in body.strip().splitlines():
        end, _, name = line.split()
        end = float(end)
        if end > previous_end:
            phones.append([festival_phone(name, language), previous_end, end])
        previous_end = end
    if language == "catalan":
        for before, phone in zip(phones, phones[1:]):
            if phone[0] == "bh" and before[0] in ("pau", "m", "n", "ng"):
                phone[0] = "b"
    return phones


# ---------------------------------------------------------------- singing and music

# Formants (Hz, bandwidth) of sung vowels; the phone is the vowel's mouth shape.
VOWELS = {
    "aa": [(800, 80), (1150, 90), (2800, 120)],
    "ao": [(500, 70), (900, 80), (2600, 120)],
    "ow": [(450, 70), (800, 80), (2600, 120)],
    "eh": [(550, 60), (1800, 100), (2600, 120)],
    "iy": [(300, 50), (2300, 100), (3000, 150)],
    "uw": [(320, 50), (850, 80), (2400, 120)],
    "ae": [(700, 80), (1700, 100), (2600, 120)],
}


def resonator(samples, freq, bandwidth):
    r = math.exp(-math.pi * bandwidth / RATE)
    c = 2 * r * math.cos(2 * math.pi * freq / RATE)
    a1, a2 = c, -r * r
    gain = 1 - r
    y1 = y2 = 0.0
    out = []
    for x in samples:
        y = gain * x + a1 * y1 + a2 * y2
        out.append(y)
        y2, y1 = y1, y
    return out


def sung_vowels(rng, seconds):
    """Held vowels on a melody: (samples, phones)."""
    samples, phones, t = [], [], 0.0
    base = rng.choice([110.0, 147.0, 196.0, 262.0])
    while t < seconds:
        vowel = rng.choice(list(VOWELS))
        note = base * 2 ** (rng.choice([0, 2, 4, 5, 7, 9, 12]) / 12)
        length = rng.uniform(0.5, 2.0)
        n = int(length * RATE)
        phase, source = 0.0, []
        vibrato_rate, vibrato_depth = rng.uniform(4.5, 6.5), rng.uniform(0.01, 0.03)
        for i in range(n):
            f0 = note * (1 + vibrato_depth * math.sin(2 * math.pi * vibrato_rate * i / RATE))
            phase += f0 / RATE
            # A glottal-like pulse: a sawtooth with a softened edge.
            source.append((phase % 1.0) * 2 - 1)
        voiced = source
        for freq, bandwidth in VOWELS[vowel]:
            voiced = [a + b for a, b in zip(voiced, resonator(source, freq, bandwidth))]
        attack = int(0.05 * RATE)
        peak = max(1e-9, max(abs(v) for v in voiced))
        level = rng.uniform(2000, 12000) / peak
        for i in range(n):
            envelope = min(1.0, i / attack, (n - i) / attack)
            samples.append(voiced[i] * level * envelope)
        phones.append([vowel, t, t + length])
        t += length
        gap = rng.uniform(0.1, 0.4)
        samples.extend([0.0] * int(gap * RATE))
        phones.append(["pau", t, t + gap])
        t += gap
    return samples, phones


def karplus(freq, length, rng):
    period = max(2, int(RATE / freq))
    buffer = [rng.uniform(-1, 1) for _ in range(period)]
    out = []
    for i in range(int(length * RATE)):
        value = buffer[i % period]
        buffer[i % period] = 0.996 * 0.5 * (value + buffer[(i + 1) % period])
        out.append(value)
    return out


def instrument_note(kind, freq, length, rng):
    n = int(length * RATE)
    if kind == "pluck":
        return karplus(freq, length, rng)
    if kind == "square":
        return [(1.0 if (i * freq / RATE) % 1 < 0.5 else -1.0) * math.exp(-3 * i / n) for i in range(n)]
    if kind == "organ":
        return [sum(math.sin(2 * math.pi * freq * h * i / RATE) / h for h in (1, 2, 3, 4))
                * min(1.0, i / 400, (n - i) / 400) for i in range(n)]
    if kind == "marimba":
        return [math.sin(2 * math.pi * freq * i / RATE) * math.exp(-6 * i / RATE)
                + 0.3 * math.sin(2 * math.pi * freq * 4 * i / RATE) * math.exp(-20 * i / RATE)
                for i in range(n)]
    if kind == "saw":
        # Detuned sawtooth pad with a slow attack.
        return [sum(((i * freq * d / RATE) % 1.0) * 2 - 1 for d in (1.0, 1.005, 0.995)) / 3
                * min(1.0, i / (0.1 * RATE), (n - i) / 800) for i in range(n)]
    if kind == "bell":
        return [math.sin(2 * math.pi * freq * i / RATE
                         + 2.0 * math.exp(-4 * i / RATE) * math.sin(2 * math.pi * freq * 3.5 * i / RATE))
                * math.exp(-3 * i / RATE) for i in range(n)]
    if kind == "additive":
        # A steady tone with random harmonic weights: harmonic like a voice, without
        # a voice's formants and articulation.
        weights = [rng.random() ** 2 for _ in range(rng.randint(2, 12))]
        return [sum(w * math.sin(2 * math.pi * freq * (h + 1) * i / RATE) for h, w in enumerate(weights))
                * min(1.0, i / 300, (n - i) / 300) for i in range(n)]
    if kind == "hihat":
        return [rng.uniform(-1, 1) * math.exp(-60 * i / RATE) for i in range(n)]
    if kind == "drum":
        return [rng.uniform(-1, 1) * math.exp(-30 * i / RATE)
                + math.sin(2 * math.pi * 60 * i / RATE) * math.exp(-12 * i / RATE) for i in range(n)]
    raise ValueError(kind)


def music(rng, seconds, kinds, chords=False):
    samples, t = [], 0.0
    base = rng.choice([110.0, 131.0, 165.0, 220.0])
    while t < seconds:
        kind = rng.choice(kinds)
        length = rng.uniform(0.15, 0.6)
        voices = rng.choice([1, 2, 3]) if chords else 1
        note = [0.0] * int(length * RATE)
        for _ in range(voices):
            freq = base * 2 ** (rng.choice([0, 3, 4, 5, 7, 10, 12, 15]) / 12)
            for i, v in enumerate(instrument_note(kind, freq, length, rng)):
                note[i] += v
        level = rng.uniform(1500, 10000) / max(1e-9, max(abs(v) for v in note))
        samples.extend(v * level for v in note)
        t += length
    return samples, [["pau", 0.0, len(samples) / RATE]]


def mix_music_bed(speech_path, rng, kinds):
    """Speech over quieter music (12-24 dB below): the mouth follows the voice only."""
    with wave.open(speech_path) as w:
        speech = struct.unpack(f"<{w.getnframes()}h", w.readframes(w.getnframes()))
    bed, _ = music(rng, len(speech) / RATE + 0.5, kinds, chords=True)
    speech_rms = math.sqrt(sum(x * x for x in speech) / max(1, len(speech)))
    bed_rms = math.sqrt(sum(x * x for x in bed) / max(1, len(bed)))
    gain = speech_rms / max(1e-9, bed_rms) * 10 ** (-rng.uniform(12, 24) / 20)
    write_wav(speech_path, [s + gain * b for s, b in zip(speech, bed)])


# ---------------------------------------------------------------- the sets

ESPEAK_TRAIN = ["en-us", "en", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
                "en-gb-x-gbcwmd"]
ESPEAK_VARIANTS = ["", "+m1", "+m3", "+m7", "+f1", "+f2", "+f3", "+f5", "+klatt"]
ESPEAK_EVAL = ["en-gb-scotland+f4"]
FESTIVAL_TRAIN = ["kal_diphone", "ked_diphone"]
FESTIVAL_TRAIN_LANGUAGE = {"upc_ca_ona_hts": "catalan", "lp_diphone": "italian",
                           "pc_diphone": "italian"}
FESTIVAL_EVAL = ["cmu_us_slt_arctic_hts"]
# Human read speech with forced phone alignments (tools/builtin/human-speech/README.md).
HUMAN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "human-speech")
HUMAN_EVAL = "librivox-human"


def human_clips(out):
    """Copies the human speech clips into OUT/eval; returns their manifest entries."""
    entries = []
    if not os.path.isdir(HUMAN_DIR):
        sys.exit(f"{HUMAN_DIR}: missing (it is part of the repository)")
    for name in sorted(os.listdir(HUMAN_DIR)):
        if not name.endswith(".phone.json"):
            continue
        stem = name[:-len(".phone.json")]
        path = os.path.join(HUMAN_DIR, name)
        try:
            with open(path) as f:
                alignment = json.load(f)
            phones = []
            for word in alignment["w"]:
                for phone in word["w"]:
                    label = phone["t"].lower()
                    phones.append(["pau" if label == "sil" else label, round(phone["b"], 3),
                                   round(phone["b"] + phone["d"], 3)])
        except (OSError, ValueError, KeyError, TypeError) as err:
            sys.exit(f"{path}: not a PocketSphinx phone alignment ({err!r})")
        wav_path = os.path.join(out, "eval", f"eval-human-{stem[-4:]}.wav")
        with open(os.path.join(HUMAN_DIR, stem + ".wav"), "rb") as src, \
                open(wav_path, "wb") as dst:
            dst.write(src.read())
        entries.append({"name": f"eval-human-{stem[-4:]}", "split": "eval", "kind": "speech",
                        "synth": "human", "voice": HUMAN_EVAL, "text": alignment["t"],
                        "wav": os.path.relpath(wav_path, out), "phones": phones})
    if not entries:
        sys.exit(f"{HUMAN_DIR}: no *.phone.json alignments")
    return entries


def progress(done, total, label):
    width = 30
    filled = int(width * done / max(1, total))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label:<40}")
    sys.stderr.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a small set, for tests")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    scale = 0.1 if args.quick else 1.0
    for split in ("train", "eval"):
        os.makedirs(os.path.join(args.out, split), exist_ok=True)

    plan = []  # (split, kind, voice, text, parameters)
    train_texts = sentences(rng, int(900 * scale))
    eval_texts = sentences(rng, int(60 * scale))
    for i, text in enumerate(train_texts):
        if i % 5 < 3:
            voice = rng.choice(ESPEAK_TRAIN) + rng.choice(ESPEAK_VARIANTS)
            plan.append(("train", "espeak", voice, text,
                         {"rate": rng.choice([130, 150, 170, 190, 210, 240]),
                          "pitch": rng.randint(25, 75), "range": rng.randint(30, 90)}))
        else:
            plan.append(("train", "festival", rng.choice(FESTIVAL_TRAIN), text,
                         {"stretch": rng.choice([0.8, 0.9, 1.0, 1.15, 1.3])}))
    for text in catalan_sentences(rng, int(150 * scale)):
        plan.append(("train", "festival", "upc_ca_ona_hts", text,
                     {"stretch": rng.choice([0.85, 1.0, 1.15])}))
    italian = phrase_sentences(rng, int(160 * scale), IT_SUBJECTS, IT_VERBS, IT_OBJECTS,
                               IT_ENDINGS)
    for i, text in enumerate(italian):
        plan.append(("train", "festival", "lp_diphone" if i % 2 == 0 else "pc_diphone", text,
                     {"stretch": rng.choice([0.85, 1.0, 1.15])}))
    for text in eval_texts:
        plan.append(("eval", "festival", FESTIVAL_EVAL[0], text, {"stretch": 1.0}))
        plan.append(("eval", "espeak", ESPEAK_EVAL[0], text, {"rate": 170, "pitch": 50, "range": 60}))

    espeak = Espeak()
    manifest = []
    festival_jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (split, kind, voice, text, params) in enumerate(plan):
            name = f"{split}-{n:05d}"
            wav_path = os.path.join(args.out, split, name + ".wav")
            entry = {"name": name, "split": split, "kind": "speech", "synth": kind,
                     "voice": voice, "text": text, "params": params,
                     "wav": os.path.relpath(wav_path, args.out)}
            if kind == "espeak":
                samples, phones = espeak.say(text, voice, params["rate"], params["pitch"],
                                             params["range"])
                raw = os.path.join(tmp, "espeak.wav")
                with wave.open(raw, "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(espeak.rate)
                    w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
                resample_to_16k(raw, wav_path)
                entry["phones"] = phones
                manifest.append(entry)
                progress(n + 1, len(plan), f"espeak {voice}")
            else:
                segs = os.path.join(tmp, name + ".segs")
                native = os.path.join(tmp, name + ".native.wav")
                festival_jobs.append((voice, params["stretch"], text, native, segs, wav_path, entry))
        # festival in batches of 40 utterances per process.
        for start in range(0, len(festival_jobs), 40):
            batch = festival_jobs[start:start + 40]
            festival_batch([job[:5] for job in batch], tmp)
            for voice, _, _, native, segs, wav_path, entry in batch:
                resample_to_16k(native, wav_path)
                entry["phones"] = read_segs(segs, FESTIVAL_TRAIN_LANGUAGE.get(voice))
                manifest.append(entry)
            progress(start + len(batch), len(festival_jobs), "festival")

        # Some training speech gets a music bed.
        training_kinds = ["pluck", "square", "drum", "saw", "bell", "additive", "hihat"]
        for entry in manifest:
            if entry["split"] == "train" and rng.random() < 0.15:
                mix_music_bed(os.path.join(args.out, entry["wav"]), rng, training_kinds)
                entry["music_bed"] = True

        # Singing and music.
        extras = []
        for i in range(int(24 * scale) or 2):
            extras.append(("train", "sung", i))
        for i in range(int(60 * scale) or 2):
            extras.append(("train", "music", i))
        for n, (split, kind, i) in enumerate(extras):
            name = f"{split}-{kind}-{i:03d}"
            wav_path = os.path.join(args.out, split, name + ".wav")
            if kind == "sung":
                samples, phones = sung_vowels(rng, rng.uniform(6, 10))
            else:
                samples, phones = music(rng, rng.uniform(6, 10), training_kinds, chords=True)
            write_wav(wav_path, samples)
            manifest.append({"name": name, "split": split, "kind": kind, "synth": "python",
                             "voice": kind, "wav": os.path.relpath(wav_path, args.out),
                             "phones": phones})
            progress(n + 1, len(extras), kind)

        # Evaluation extras: festival singing (a different synthesizer than training's
        # formant vowels) and instruments not used in training.
        song = os.path.join(tmp, "song.xml")
        notes = [("A3", "Ah"), ("C4", "Oh"), ("E4", "Ah"), ("D4", "Oh"), ("C4", "Ah"),
                 ("A3", "Oh"), ("G3", "Ah"), ("A3", "Ah")]
        with open(song, "w") as f:
            f.write('<?xml version="1.0"?>\n<!DOCTYPE SINGING PUBLIC "-//SINGING//DTD SINGING'
                    ' mark up//EN" "Singing.v0_1.dtd" []>\n<SINGING BPM="50">\n')
            for note, syllable in notes:
                f.write(f'<PITCH NOTE="{note}"><DURATION BEATS="1.5">{syllable}</DURATION></PITCH>\n')
            f.write("</SINGING>\n")
        native = os.path.join(tmp, "song.wav")
        subprocess.run(["text2wave", "-mode", "singing", song, "-o", native], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wav_path = os.path.join(args.out, "eval", "eval-sung-festival.wav")
        resample_to_16k(native, wav_path)
        manifest.append({"name": "eval-sung-festival", "split": "eval", "kind": "sung",
                         "synth": "festival-singing", "voice": "kal_diphone",
                         "wav": os.path.relpath(wav_path, args.out), "phones": None})
        samples, phones = music(random.Random(args.seed + 99), 20.0, ["organ", "marimba"])
        wav_path = os.path.join(args.out, "eval", "eval-music.wav")
        write_wav(wav_path, samples)
        manifest.append({"name": "eval-music", "split": "eval", "kind": "music",
                         "synth": "python", "voice": "organ+marimba",
                         "wav": os.path.relpath(wav_path, args.out), "phones": phones})

    manifest.extend(human_clips(args.out))
    manifest.sort(key=lambda e: e["name"])
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump({"seed": args.seed, "rate": RATE,
                   "held_out_voices": ESPEAK_EVAL + FESTIVAL_EVAL + [HUMAN_EVAL],
                   "utterances": manifest}, f, indent=1)
    total = sum(duration(os.path.join(args.out, e["wav"])) for e in manifest)
    sys.stderr.write(f"\n{len(manifest)} files, {total / 60:.1f} minutes of audio in {args.out}\n")


if __name__ == "__main__":
    main()
