//! The builtin renderer: a dense backward warp of the portrait (grid_sample), driven by
//! the motion parameters, plus synthesis of what the portrait does not show (the inside
//! of a mouth opened wider than in the photo, eyelids over the eyes).
//!
//! Everything is computed in *face units*: origin between the eyes, u along the eye
//! line (towards the image-right eye), v perpendicular to it (towards the chin), one
//! unit = the inter-ocular distance (IOD). Only a region of interest around the head is
//! warped; outside the head-and-neck mask the frame is the fitted portrait, untouched.
//!
//! Two passes per frame:
//! 1. local deformations: jaw (a piecewise-linear remap of v per column, through knots at
//!    the nose base, the lips' opening, the chin and the neck), lip spread/rounding,
//!    eyelids, brows; then the mouth cavity and lash lines are painted in;
//! 2. head motion: roll about the neck, yaw/pitch parallax, translation, all weighted
//!    by a feathered head mask that is exactly zero outside it.

use tch::{Kind, Tensor};

use crate::engine::{EngineError, FrameSize, Motion, TensorContext};
use crate::face::{FaceLayout, Point};
use crate::render::fit::Placement;

/// Lip separation at `mouth_open = 1`, in IOD (a wide "ah" is about 2 cm on a 6.3 cm
/// IOD; a little more reads better on small faces).
pub const MAX_GAP: f64 = 0.34;
/// How far each mouth corner moves at full spread / full rounding, in IOD.
const SPREAD_REACH: f64 = 0.10;
const ROUND_REACH: f64 = 0.14;
/// Eye aperture above and below the eye line, in IOD (the lids' resting positions).
const LID_UP: f64 = 0.075;
const LID_DOWN: f64 = 0.055;
/// Skin above the upper lid that is stretched down over a closing eye, in IOD.
const LID_SKIN_TOP: f64 = -0.2;
/// Brow lift at `brow_raise = 1`, in IOD.
const BROW_LIFT: f64 = 0.07;
/// Head mask: an ellipse (centre v, semi-axes) in IOD; full motion inside
/// `MASK_FULL`, none outside 1.
const MASK_CENTRE_V: f64 = 0.45;
const MASK_AXIS_U: f64 = 1.55;
const MASK_AXIS_V: f64 = 2.05;
const MASK_FULL: f64 = 0.72;
/// Yaw/pitch parallax: how far central features move per radian, in IOD.
const YAW_PARALLAX: f64 = 0.8;
const PITCH_PARALLAX: f64 = 0.7;

/// Colours painted into an opened mouth (linear-ish sRGB in [0, 1]).
/// Inner side of the lips, the dark of the mouth, the tongue.
const CAVITY_LIP: [f64; 3] = [0.36, 0.14, 0.13];
const CAVITY_DARK: [f64; 3] = [0.11, 0.035, 0.035];
const CAVITY_TONGUE: [f64; 3] = [0.42, 0.17, 0.16];
const TEETH_UPPER: [f64; 3] = [0.86, 0.84, 0.80];
const TEETH_LOWER: [f64; 3] = [0.74, 0.71, 0.67];
const LASH: [f64; 3] = [0.08, 0.06, 0.06];

/// The face in face units, for one frame size.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    /// Eye midpoint in frame pixels, IOD in frame pixels, roll (radians).
    origin: Point,
    iod: f64,
    cos: f64,
    sin: f64,
    mouth_u: f64,
    mouth_v: f64,
    corner_v: f64,
    half_width: f64,
    /// The portrait's own lip opening at the mouth centre.
    source_gap: f64,
    chin_v: f64,
    eye_half_width: f64,
}

impl Geometry {
    fn new(layout: &FaceLayout, placement: &Placement) -> Self {
        let to_frame = |p: Point| {
            let (x, y) = placement.to_frame(f64::from(p.x), f64::from(p.y));
            Point {
                x: x as f32,
                y: y as f32,
            }
        };
        let (left, right) = (to_frame(layout.left_eye), to_frame(layout.right_eye));
        let origin = Point {
            x: (left.x + right.x) / 2.0,
            y: (left.y + right.y) / 2.0,
        };
        let (dx, dy) = (f64::from(right.x - left.x), f64::from(right.y - left.y));
        let iod = dx.hypot(dy).max(1.0);
        let (cos, sin) = (dx / iod, dy / iod);
        let face = |p: Point| {
            let p = to_frame(p);
            let (x, y) = (f64::from(p.x - origin.x), f64::from(p.y - origin.y));
            ((cos * x + sin * y) / iod, (-sin * x + cos * y) / iod)
        };
        let (mouth_u, mouth_v) = face(layout.mouth_centre);
        let (left_u, left_v) = face(layout.mouth_left);
        let (right_u, right_v) = face(layout.mouth_right);
        let (_, chin_v) = face(layout.chin);
        let scale = placement.scale / iod;
        Self {
            origin,
            iod,
            cos,
            sin,
            mouth_u,
            mouth_v,
            corner_v: ((left_v + right_v) / 2.0).min(mouth_v),
            half_width: ((right_u - left_u) / 2.0).clamp(0.3, 0.7),
            source_gap: f64::from(layout.mouth_gap) * scale,
            chin_v: chin_v.max(mouth_v + 0.45),
            eye_half_width: (f64::from(layout.eye_width) * scale / 2.0).clamp(0.15, 0.32),
        }
    }

    /// Frame pixel of a face point.
    fn frame_point(&self, u: f64, v: f64) -> (f64, f64) {
        (
            f64::from(self.origin.x) + self.iod * (self.cos * u - self.sin * v),
            f64::from(self.origin.y) + self.iod * (self.sin * u + self.cos * v),
        )
    }
}

/// Region of interest in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Roi {
    left: i64,
    top: i64,
    width: i64,
    height: i64,
}

/// Everything about one portrait at one frame size that does not change per frame.
pub struct FaceRig {
    geometry: Geometry,
    roi: Roi,
    /// The fitted frame `(3, H, W)` and its ROI `(1, 3, h, w)`.
    frame: Tensor,
    roi_pixels: Tensor,
    /// Face coordinates of every ROI pixel centre, `(h, w)`.
    u: Tensor,
    v: Tensor,
    /// 1 inside the head mask support, 0 outside: where the warp may change pixels.
    inside: Tensor,
    /// Feathered head mask for head motion.
    head: Tensor,
    /// Per column: lip line, the portrait's own gap profile, jaw weight.
    lip_line: Tensor,
    source_gap: Tensor,
    jaw: Tensor,
    /// Per pixel: vertical falloff around the lip line (for spread/round).
    lip_band: Tensor,
    /// Per pixel: brow bumps.
    brows: Tensor,
    /// Per pixel: central-feature weight for yaw/pitch parallax.
    parallax: Tensor,
}

fn smoothstep(edge0: f64, edge1: f64, x: &Tensor) -> Tensor {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    &t * &t * (3.0f64 - 2.0 * &t)
}

impl FaceRig {
    /// Prepares the rig for `layout` (source pixels) in a frame where the portrait sits at
    /// `placement`; `frame` is the fitted portrait `(3, H, W)`.
    pub fn new(
        layout: &FaceLayout,
        placement: &Placement,
        frame: &Tensor,
        size: FrameSize,
    ) -> Result<Self, EngineError> {
        let _no_grad = tch::no_grad_guard();
        let geometry = Geometry::new(layout, placement);
        let device = frame.device();
        // Bounding box of the mask ellipse, in frame pixels.
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for k in 0..64 {
            let a = f64::from(k) / 64.0 * std::f64::consts::TAU;
            let (x, y) =
                geometry.frame_point(MASK_AXIS_U * a.cos(), MASK_CENTRE_V + MASK_AXIS_V * a.sin());
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
        let clamp = |value: f64, max: u32| (value.max(0.0) as i64).min(i64::from(max));
        let (left, top) = (
            clamp(x0.floor() - 2.0, size.width),
            clamp(y0.floor() - 2.0, size.height),
        );
        let (right, bottom) = (
            clamp(x1.ceil() + 2.0, size.width),
            clamp(y1.ceil() + 2.0, size.height),
        );
        let roi = Roi {
            left,
            top,
            width: (right - left).max(1),
            height: (bottom - top).max(1),
        };
        let roi_pixels = frame
            .f_narrow(1, roi.top, roi.height)
            .and_then(|t| t.f_narrow(2, roi.left, roi.width))
            .and_then(|t| t.f_unsqueeze(0))
            .and_then(|t| t.f_contiguous())
            .context("cutting the face region")?;

        let options = (Kind::Float, device);
        let xs = Tensor::arange(roi.width, options)
            + (roi.left as f64 + 0.5 - f64::from(geometry.origin.x));
        let ys = Tensor::arange(roi.height, options)
            + (roi.top as f64 + 0.5 - f64::from(geometry.origin.y));
        let (dx, dy) = (xs.view([1, -1]), ys.view([-1, 1]));
        let g = &geometry;
        let u = (&dx * g.cos + &dy * g.sin) / g.iod;
        let v = (&dx * (-g.sin) + &dy * g.cos) / g.iod;

        let r =
            ((&u / MASK_AXIS_U).square() + ((&v - MASK_CENTRE_V) / MASK_AXIS_V).square()).sqrt();
        let head = 1.0f64 - smoothstep(MASK_FULL, 1.0, &r);
        let inside = r.lt(1.0).to_kind(Kind::Float);

        // Mouth: the lip line curves from the centre up (or down) to the corners.
        let t = ((&u - g.mouth_u) / g.half_width).clamp(-1.0, 1.0);
        let lip_line = g.mouth_v + (g.corner_v - g.mouth_v) * t.square();
        // Teeth show at nearly full height over most of a smile's width.
        let flat = (1.0f64 - ((&u - g.mouth_u) / g.half_width).pow_tensor_scalar(4)).clamp_min(0.0);
        let source_gap = flat.sqrt() * g.source_gap;
        let jaw_distance = (&u - g.mouth_u).abs();
        let jaw = 1.0f64 - smoothstep(0.55, 1.15, &jaw_distance);
        let lip_band = (-((&v - &lip_line) / 0.28).square()).exp();
        let brows = (-((&u + 0.5) / 0.35).square() - ((&v + 0.32) / 0.22).square()).exp()
            + (-((&u - 0.5) / 0.35).square() - ((&v + 0.32) / 0.22).square()).exp();
        let parallax = (-(&u / 0.9).square() - ((&v - 0.5) / 1.3).square()).exp();
        Ok(Self {
            geometry,
            roi,
            frame: frame.shallow_clone(),
            roi_pixels,
            u,
            v,
            inside,
            head,
            lip_line,
            source_gap,
            jaw,
            lip_band,
            brows,
            parallax,
        })
    }

    /// The mouth opening (0..1) at which the rendered lips match the portrait's.
    pub fn rest_mouth_open(&self) -> f32 {
        (self.geometry.source_gap / MAX_GAP).clamp(0.0, 1.0) as f32
    }

    /// Draws one frame: `(3, H, W)` float in `[0, 1]`.
    pub fn render(&self, motion: &Motion) -> Tensor {
        let _no_grad = tch::no_grad_guard();
        let g = &self.geometry;
        let (u, v) = (&self.u, &self.v);
        let plane = |t: &Tensor| t.unsqueeze(0).unsqueeze(0);
        let colour = |c: [f64; 3]| {
            Tensor::from_slice(&c.map(|x| x as f32))
                .to_device(u.device())
                .view([1, 3, 1, 1])
        };

        // ---- pass 1: jaw remap --------------------------------------------------------
        let open = f64::from(motion.mouth_open.clamp(0.0, 1.0));
        let round = f64::from(motion.mouth_round.clamp(0.0, 1.0));
        let reach =
            f64::from(motion.mouth_width.clamp(-1.0, 1.0)) * SPREAD_REACH - round * ROUND_REACH;
        // The opening spans the mouth as its corners now stand (rounding draws them in,
        // which makes the same opening look round).
        let half_width = (g.half_width + reach).max(0.15);
        let t = ((u - g.mouth_u) / half_width).clamp(-1.0, 1.0);
        // Up to the portrait's own opening the lips keep its shape (so the rest pose is
        // the portrait); any further opening is elliptic across the mouth.
        let wanted = open * MAX_GAP;
        let kept = (wanted / g.source_gap.max(1e-6)).min(1.0);
        let target_gap = &self.source_gap * kept
            + (1.0f64 - t.square()).clamp_min(0.0).sqrt() * (wanted - g.source_gap).max(0.0);
        let delta = &target_gap - &self.source_gap;
        let opening = delta.clamp_min(0.0);
        let closing = delta.clamp_max(0.0);
        // The chin follows the jaw: all of an opening, half of a closing (the upper lip
        // does the other half).
        let centre_delta = open * MAX_GAP - g.source_gap;
        let chin_move = &self.jaw * (centre_delta.max(0.0) + centre_delta.min(0.0) / 2.0);
        let anchor = g.mouth_v - 0.42;
        let neck = g.chin_v + 0.55;
        let gap_top = &self.lip_line - &self.source_gap / 2.0;
        let gap_bottom = &self.lip_line + &self.source_gap / 2.0;
        // Target knots (where things end up) and source knots (where they come from);
        // between t2 and t3 (an opening wider than the portrait's) lies the cavity.
        let t1 = &gap_top - &closing / 2.0;
        let t2 = &gap_bottom + &closing / 2.0;
        let t3 = &t2 + &opening;
        let t4 = (&chin_move + g.chin_v).maximum(&(&t3 + 0.05));
        let knots_target = [
            Tensor::full_like(u, anchor),
            t1,
            t2.shallow_clone(),
            t3.shallow_clone(),
            t4,
            Tensor::full_like(u, neck),
        ];
        let knots_source = [
            Tensor::full_like(u, anchor),
            gap_top,
            gap_bottom.shallow_clone(),
            gap_bottom,
            Tensor::full_like(u, g.chin_v),
            Tensor::full_like(u, neck),
        ];
        let mut v_source = v.shallow_clone();
        for k in 0..5 {
            let (ta, tb) = (&knots_target[k], &knots_target[k + 1]);
            let (sa, sb) = (&knots_source[k], &knots_source[k + 1]);
            let span = (tb - ta).clamp_min(1e-4);
            let mapped = sa + (v - ta) * (sb - sa) / span;
            let within = v.ge_tensor(ta).logical_and(&v.lt_tensor(tb));
            v_source = mapped.where_self(&within, &v_source);
        }

        // ---- lips spread or round -----------------------------------------------------
        let t_wide = (u - g.mouth_u) / g.half_width;
        let beyond = smoothstep(1.0, 1.8, &t_wide.abs());
        let spread = t_wide.clamp(-1.0, 1.0) * (1.0f64 - beyond) * &self.lip_band * reach;
        let u_source = u - &spread;

        // ---- brows and eyelids --------------------------------------------------------
        let brow = f64::from(motion.brow_raise.clamp(0.0, 1.0)) * BROW_LIFT;
        let mut v_source = v_source + &self.brows * brow;
        let feather = 0.8 / g.iod; // about one pixel, in face units
        let mut lashes = Tensor::zeros_like(u);
        for (eye_u, blink) in [(-0.5, motion.blink_left), (0.5, motion.blink_right)] {
            let blink = f64::from(blink.clamp(0.0, 1.0));
            if blink <= 0.0 {
                continue;
            }
            let te = (u - eye_u) / g.eye_half_width;
            let profile = (1.0f64 - te.square()).clamp_min(0.0).sqrt();
            let lid_rest = &profile * (-LID_UP);
            let lid_floor = &profile * (LID_DOWN * 0.85);
            let lid = &lid_rest + (&lid_floor - &lid_rest) * blink;
            // The lid skin above the eye slides down over it; below the lid's edge the
            // eye stays as it was (what the lid covers is simply not seen).
            let span = (&lid - LID_SKIN_TOP).clamp_min(1e-4);
            let stretched = LID_SKIN_TOP + (v - LID_SKIN_TOP) * (&lid_rest - LID_SKIN_TOP) / &span;
            let covered = v
                .ge(LID_SKIN_TOP)
                .logical_and(&v.lt_tensor(&lid))
                .logical_and(&profile.gt(0.0));
            v_source = stretched.where_self(&covered, &v_source);
            let width = 0.022 + 0.5 * feather;
            let line = (-((v - &lid) / width).square()).exp()
                * profile.sqrt()
                * ((blink * 1.6).min(1.0) * 0.75);
            lashes = lashes.maximum(&line);
        }
        let warped = self.sample(&self.roi_pixels, &u_source, &v_source);

        // ---- paint the opened mouth and the lash lines --------------------------------
        let gap_px = (&t3 - &t2) * g.iod;
        let from_top = (v - &t2) * g.iod; // pixels below the upper edge of the opening
        let from_bottom = (&t3 - v) * g.iod; // pixels above the lower lip
        let inside_gap = smoothstep(-0.5, 0.5, &from_top) * smoothstep(-0.5, 0.5, &from_bottom);
        // No paint for sub-pixel openings: they would read as lines, not as a mouth.
        let cavity_alpha = &inside_gap * smoothstep(0.6, 1.6, &gap_px);
        // Dark inside, the lips' inner side at the edges, the tongue low in a wide mouth.
        let edge = from_top.minimum(&from_bottom);
        let depth = (v - &t2) / (&t3 - &t2).clamp_min(1e-4);
        let tongue =
            smoothstep(0.55, 1.0, &depth) * smoothstep(0.12 * g.iod, 0.25 * g.iod, &gap_px);
        let cavity = colour(CAVITY_LIP)
            + (colour(CAVITY_DARK) - colour(CAVITY_LIP)) * plane(&smoothstep(0.0, 2.5, &edge))
            + (colour(CAVITY_TONGUE) - colour(CAVITY_DARK)) * plane(&(tongue * 0.7));
        let mut painted = &warped + (&cavity - &warped) * plane(&cavity_alpha);
        // Teeth, in the middle of the mouth only: the lower row above the lower lip once
        // the mouth is well open; the upper row only where the portrait shows none.
        let middle = 1.0f64 - smoothstep(0.45, 0.75, &t.abs());
        let lower_teeth = smoothstep(0.2, 1.0, &from_bottom)
            * (1.0f64 - smoothstep(0.035 * g.iod, 0.035 * g.iod + 1.0, &from_bottom))
            * smoothstep(0.18 * g.iod, 0.28 * g.iod, &gap_px)
            * &middle
            * &cavity_alpha
            * 0.5;
        painted = &painted + (colour(TEETH_LOWER) - &painted) * plane(&lower_teeth);
        if g.source_gap < 0.04 {
            let band = (&gap_px * 0.3).clamp_max(0.075 * g.iod);
            let upper_teeth = smoothstep(0.2, 1.0, &from_top)
                * (1.0f64 - smoothstep(0.0, 1.0, &(&from_top - &band)))
                * smoothstep(0.08 * g.iod, 0.16 * g.iod, &gap_px)
                * &middle
                * &cavity_alpha;
            painted = &painted + (colour(TEETH_UPPER) - &painted) * plane(&upper_teeth);
        }
        painted = &painted + (colour(LASH) - &painted) * plane(&lashes);

        // ---- pass 2: head motion ------------------------------------------------------
        let pivot_v = g.chin_v + 0.6;
        let (roll_sin, roll_cos) = f64::from(motion.roll).sin_cos();
        let pv = v - pivot_v;
        let roll_du = u * (roll_cos - 1.0) - &pv * roll_sin;
        let roll_dv = u * roll_sin + &pv * (roll_cos - 1.0);
        let yaw = f64::from(motion.yaw);
        let pitch = f64::from(motion.pitch);
        let du = (roll_du
            + &self.parallax * (yaw * YAW_PARALLAX)
            + (yaw * 0.25 + f64::from(motion.shift_x)))
            * &self.head;
        let dv = (roll_dv
            + &self.parallax * (pitch * PITCH_PARALLAX)
            + (pitch * 0.2 + f64::from(motion.shift_y)))
            * &self.head;
        let moved = self.sample(&painted, &(u - du), &(v - dv));

        // ---- composite: outside the head mask the portrait stays exactly as it was ------
        let inside = plane(&self.inside);
        let region = &moved * &inside + &self.roi_pixels * (1.0f64 - &inside);
        let out = self.frame.copy();
        out.narrow(1, self.roi.top, self.roi.height)
            .narrow(2, self.roi.left, self.roi.width)
            .copy_(&region.squeeze_dim(0));
        out
    }

    /// Bilinear samples of `image` (`(1, 3, h, w)`, the ROI) at face coordinates.
    fn sample(&self, image: &Tensor, u: &Tensor, v: &Tensor) -> Tensor {
        let g = &self.geometry;
        let x = (u * g.cos - v * g.sin) * g.iod + (f64::from(g.origin.x) - self.roi.left as f64);
        let y = (u * g.sin + v * g.cos) * g.iod + (f64::from(g.origin.y) - self.roi.top as f64);
        let grid = Tensor::stack(
            &[
                x * (2.0 / self.roi.width as f64) - 1.0,
                y * (2.0 / self.roi.height as f64) - 1.0,
            ],
            -1,
        )
        .unsqueeze(0);
        // bilinear (0), border padding (1), align_corners=false.
        image.grid_sampler_2d(&grid, 0, 1, false)
    }
}
