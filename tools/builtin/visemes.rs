//! From phone timings to mouth-shape targets: what the mouth model is trained to output
//! (and what the evaluation compares against). Phones use an ARPAbet-like inventory
//! (tools/builtin/make_data.py maps espeak-ng and festival phones onto it).

/// Mouth shape: opening 0..1, width -1..1 (spread positive), rounding 0..1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub open: f32,
    pub width: f32,
    pub round: f32,
}

const fn shape(open: f32, width: f32, round: f32) -> Shape {
    Shape { open, width, round }
}

/// The mouth shape a phone aims for, and whether it closes the lips (bilabials).
pub fn viseme(phone: &str) -> Option<(Shape, bool)> {
    let closed = matches!(phone, "p" | "b" | "m");
    let target = match phone {
        "aa" => shape(0.92, 0.0, 0.0),
        "ae" => shape(0.75, 0.3, 0.0),
        "ah" => shape(0.62, 0.05, 0.0),
        "ao" => shape(0.72, -0.1, 0.5),
        "aw" => shape(0.75, -0.05, 0.35),
        "ay" => shape(0.78, 0.15, 0.0),
        "ax" => shape(0.42, 0.0, 0.0),
        "el" => shape(0.35, 0.1, 0.0),
        "er" => shape(0.35, -0.05, 0.4),
        "eh" => shape(0.56, 0.3, 0.0),
        "ey" => shape(0.48, 0.4, 0.0),
        "ih" => shape(0.36, 0.3, 0.0),
        "iy" => shape(0.26, 0.6, 0.0),
        "ow" => shape(0.52, -0.2, 0.75),
        "oy" => shape(0.6, -0.1, 0.5),
        "uh" => shape(0.32, -0.2, 0.6),
        "uw" => shape(0.22, -0.3, 0.9),
        "p" | "b" | "m" => shape(0.0, 0.0, 0.0),
        // A bilabial approximant (Catalan or Spanish /b/ between vowels): lips close in
        // on each other without pressing together.
        "bh" => shape(0.06, 0.0, 0.1),
        "f" | "v" => shape(0.08, 0.1, 0.0),
        "th" | "dh" => shape(0.2, 0.1, 0.0),
        "t" | "d" | "n" | "l" | "dx" => shape(0.25, 0.15, 0.0),
        "s" | "z" => shape(0.14, 0.35, 0.0),
        "sh" | "zh" | "ch" | "jh" => shape(0.2, -0.1, 0.6),
        "k" | "g" | "ng" => shape(0.3, 0.1, 0.0),
        "hh" => shape(0.38, 0.0, 0.0),
        "r" => shape(0.2, -0.1, 0.45),
        "w" => shape(0.12, -0.3, 0.85),
        "y" => shape(0.2, 0.4, 0.0),
        "pau" => shape(0.0, 0.0, 0.0),
        _ => return None,
    };
    Some((target, closed))
}

/// A phone with its start and end in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Phone {
    pub name: String,
    pub start: f64,
    pub end: f64,
}

/// Targets sampled at `times` (seconds): each phone's shape, blended across phone
/// boundaries by a Gaussian of `coarticulation` seconds (speech anticipates and carries
/// over shapes), except that the lips close fully inside bilabials (/p b m/ are made by
/// closing them, however short).
pub fn targets(phones: &[Phone], times: &[f64], coarticulation: f64) -> Vec<Target> {
    let shape_at = |t: f64| -> Shape {
        phones
            .iter()
            .find(|p| t >= p.start && t < p.end)
            .and_then(|p| viseme(&p.name))
            .map_or(shape(0.0, 0.0, 0.0), |(s, _)| s)
    };
    // Numerical Gaussian blend over +-3 sigma at 2.5 ms steps.
    let step = 0.0025;
    let reach = (3.0 * coarticulation / step).ceil() as i64;
    times
        .iter()
        .map(|&t| {
            let (mut open, mut width, mut round, mut total) = (0.0, 0.0, 0.0, 0.0);
            for k in -reach..=reach {
                let dt = k as f64 * step;
                let w = (-(dt * dt) / (2.0 * coarticulation * coarticulation)).exp();
                let s = shape_at(t + dt);
                open += w * f64::from(s.open);
                width += w * f64::from(s.width);
                round += w * f64::from(s.round);
                total += w;
            }
            let mut blended = shape(
                (open / total) as f32,
                (width / total) as f32,
                (round / total) as f32,
            );
            // Closure of bilabials, with 10 ms ramps at their edges.
            for phone in phones
                .iter()
                .filter(|p| viseme(&p.name).is_some_and(|(_, c)| c))
            {
                let inside = ((t - phone.start) / 0.01)
                    .min((phone.end - t) / 0.01)
                    .clamp(0.0, 1.0);
                blended.open *= (1.0 - inside) as f32;
            }
            let phone = phones.iter().find(|p| t >= p.start && t < p.end);
            let voiced = phone.is_some_and(|p| p.name != "pau");
            let closed = phone.is_some_and(|p| viseme(&p.name).is_some_and(|(_, c)| c));
            Target {
                shape: blended,
                voice: if voiced { 1.0 } else { 0.0 },
                closure: if closed { 1.0 } else { 0.0 },
            }
        })
        .collect()
}

/// What the mouth model learns for one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub shape: Shape,
    /// 1 inside a phone other than a pause.
    pub voice: f32,
    /// 1 inside a bilabial.
    pub closure: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(name: &str, start: f64, end: f64) -> Phone {
        Phone {
            name: name.into(),
            start,
            end,
        }
    }

    #[test]
    fn every_phone_of_the_inventory_has_a_shape() {
        for name in [
            "aa", "ae", "ah", "ao", "aw", "ax", "ay", "eh", "el", "er", "ey", "ih", "iy", "ow",
            "oy", "uh", "uw", "p", "b", "t", "d", "dx", "k", "g", "f", "v", "th", "dh", "s", "z",
            "sh", "zh", "ch", "jh", "m", "n", "ng", "l", "r", "w", "y", "hh", "pau", "bh",
        ] {
            assert!(viseme(name).is_some(), "{name}");
        }
        assert!(viseme("xx").is_none());
    }

    #[test]
    fn short_bilabials_close_the_lips_between_open_vowels() {
        let phones = [
            phone("aa", 0.0, 0.2),
            phone("b", 0.2, 0.25),
            phone("aa", 0.25, 0.45),
        ];
        let t = targets(&phones, &[0.1, 0.225, 0.35], 0.03);
        assert!(t[0].shape.open > 0.8 && t[2].shape.open > 0.8);
        assert!(t[1].shape.open < 0.05, "{:?}", t[1]);
        assert_eq!((t[1].voice, t[1].closure), (1.0, 1.0));
        assert_eq!(t[0].closure, 0.0);
    }

    #[test]
    fn pauses_are_closed_and_silent() {
        let phones = [
            phone("pau", 0.0, 0.5),
            phone("aa", 0.5, 0.8),
            phone("pau", 0.8, 1.5),
        ];
        let t = targets(&phones, &[0.2, 0.65, 1.2], 0.03);
        assert_eq!(t[0].shape, shape(0.0, 0.0, 0.0));
        assert_eq!(t[0].voice, 0.0);
        assert!(t[1].shape.open > 0.8);
        assert_eq!(t[2].voice, 0.0);
        assert!(t[2].shape.open < 1e-3);
    }
}
