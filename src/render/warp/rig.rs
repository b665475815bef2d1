//! The face rig: everything about one portrait at one frame size that does not change
//! per frame, and the per-frame drawing from face parameters (see the module above).

use tch::{Kind, Tensor};

use super::expression::{self, Actions};
use super::field::{Rect, corners, field_positions, plane, smoothstep};
use super::zoom;
use crate::core::{Error, FaceMotion, FrameSize, TensorContext};
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
/// A full brow knit: how far the brows come down and towards each other, in IOD.
const KNIT_DOWN: f64 = 0.07;
const KNIT_IN: f64 = 0.04;
/// Upper lid travel of fully widened eyes, in IOD; the share of a blink that fully
/// narrowed eyes close.
const LID_WIDEN: f64 = 0.04;
const LID_NARROW: f64 = 0.4;
/// Iris radius in IOD (11.7 mm across on a 63 mm IOD).
const IRIS_RADIUS: f64 = 0.093;
/// Head mask: an ellipse in IOD around the mesh's face oval, widened for the ears and
/// hair and lengthened over the hair and down the neck; full motion inside `MASK_FULL`,
/// none outside 1. (On the demo portrait these give the ellipse the rig used before it
/// had a mesh: centre 0.45 below the eyes, semi-axes 1.55 and 2.05.)
const MASK_WIDEN: f64 = 1.45;
const MASK_HAIR: f64 = 0.85;
const MASK_NECK: f64 = 0.75;
const MASK_FULL: f64 = 0.72;
/// Yaw/pitch parallax: how far central features move per radian, in IOD.
const YAW_PARALLAX: f64 = 0.8;
const PITCH_PARALLAX: f64 = 0.7;

/// Colours painted into an opened mouth (linear-ish sRGB in [0, 1]).
/// Inner side of the lips, the dark of the mouth and its darkest back, the tongue.
const CAVITY_LIP: [f64; 3] = [0.36, 0.14, 0.13];
const CAVITY_DARK: [f64; 3] = [0.25, 0.085, 0.08];
const CAVITY_THROAT: [f64; 3] = [0.09, 0.025, 0.025];
const CAVITY_TONGUE: [f64; 3] = [0.45, 0.19, 0.18];
const TEETH_UPPER: [f64; 3] = [0.86, 0.84, 0.80];
const TEETH_LOWER: [f64; 3] = [0.82, 0.79, 0.74];
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
    /// The head mask's ellipse: centre (v) and semi-axes.
    mask_centre_v: f64,
    mask_axis_u: f64,
    mask_axis_v: f64,
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
        let (_, forehead_v) = face(layout.forehead);
        let (cheek_left_u, _) = face(layout.cheek_left);
        let (cheek_right_u, _) = face(layout.cheek_right);
        let chin_v = chin_v.max(mouth_v + 0.45);
        let mask_top = forehead_v.min(-0.4) - MASK_HAIR;
        let mask_bottom = chin_v + MASK_NECK;
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
            chin_v,
            eye_half_width: (f64::from(layout.eye_width) * scale / 2.0).clamp(0.15, 0.32),
            mask_centre_v: (mask_top + mask_bottom) / 2.0,
            mask_axis_u: (MASK_WIDEN * cheek_left_u.abs().max(cheek_right_u.abs())).clamp(1.3, 1.9),
            mask_axis_v: (mask_bottom - mask_top) / 2.0,
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

/// The axis-aligned box (in `bounds` pixels, clamped to it) around face-unit corners.
fn bounding_rect(
    geometry: &Geometry,
    corners: &[(f64, f64)],
    origin: (i64, i64),
    bounds: (i64, i64),
) -> Rect {
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for &(u, v) in corners {
        let (x, y) = geometry.frame_point(u, v);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    let clamp = |value: f64, offset: i64, max: i64| ((value as i64) - offset).clamp(0, max);
    let left = clamp(x0.floor() - 1.0, origin.0, bounds.0);
    let top = clamp(y0.floor() - 1.0, origin.1, bounds.1);
    let right = clamp(x1.ceil() + 1.0, origin.0, bounds.0);
    let bottom = clamp(y1.ceil() + 1.0, origin.1, bounds.1);
    Rect {
        left,
        top,
        width: (right - left).max(1),
        height: (bottom - top).max(1),
    }
}

/// Where upper (eyes, brows) and lower (mouth, jaw) deformations meet, in face units:
/// between the eyes (v = 0) and the nose base; the effects of each side are below
/// 1e-3 IOD across it.
const SPLIT_V: f64 = 0.135;

/// The lower face: jaw, lips, cavity.
struct LowerRegion {
    rect: Rect,
    /// Face coordinates of the region's field grid (its pixels, or every `step`-th).
    u: Tensor,
    v: Tensor,
    /// Pixels of this region that belong to the lower face (v >= SPLIT_V).
    mine: Tensor,
    lip_line: Tensor,
    source_gap: Tensor,
    jaw: Tensor,
    lip_band: Tensor,
}

/// The upper face: eyelids and brows.
struct UpperRegion {
    rect: Rect,
    u: Tensor,
    v: Tensor,
    mine: Tensor,
    /// Weights of the image-left and image-right brow.
    brows: [Tensor; 2],
    /// Weights of the brows' inner ends.
    inner_brows: Tensor,
}

/// The head's motion is computed on a grid this many pixels apart (at most).
const HEAD_GRID_STEP: f64 = 4.0;
/// Deformations of the face are computed on a grid of about this many points per IOD
/// (at least every pixel): finer than any feature they move, so interpolating them is
/// invisible, and a close-up costs no more than a small face.
const FIELD_POINTS_PER_IOD: f64 = 64.0;

/// What a region pass produces on its field grid: where each point samples the
/// portrait (face units), and paint over it (premultiplied colour, transmittance).
struct Layers {
    u_source: Tensor,
    v_source: Tensor,
    colour: Tensor,
    transmittance: Tensor,
    painted: bool,
}

impl Layers {
    fn new(u_source: Tensor, v_source: Tensor) -> Self {
        let shape = u_source.size();
        let device = u_source.device();
        Self {
            colour: Tensor::zeros([1, 3, shape[0], shape[1]], (Kind::Float, device)),
            transmittance: Tensor::ones([1, 1, shape[0], shape[1]], (Kind::Float, device)),
            u_source,
            v_source,
            painted: false,
        }
    }

    /// Paints `colour` (1, 3, 1, 1) with `alpha` (h, w) over what is there.
    fn paint(&mut self, colour: &Tensor, alpha: &Tensor) {
        let alpha = plane(alpha);
        self.colour = &self.colour * (1.0f64 - &alpha) + colour * &alpha;
        self.transmittance = &self.transmittance * (1.0f64 - &alpha);
        self.painted = true;
    }
}

/// Everything about one portrait at one frame size that does not change per frame.
pub struct FaceRig {
    geometry: Geometry,
    /// The ROI in frame pixels; whether it covers the whole frame.
    roi: Rect,
    whole_frame: bool,
    /// The fitted frame `(3, H, W)` and its ROI `(1, 3, h, w)`.
    frame: Tensor,
    roi_pixels: Tensor,
    /// Inside the head mask's support: where the warp may change pixels.
    inside: Tensor,
    lower: LowerRegion,
    upper: UpperRegion,
    /// The coarse grid for head motion: face coordinates, feathered mask, parallax
    /// weight, `(hc, wc)`.
    coarse_u: Tensor,
    coarse_v: Tensor,
    coarse_head: Tensor,
    coarse_parallax: Tensor,
    /// Colours as `(1, 3, 1, 1)` tensors on the device.
    colours: Colours,
}

struct Colours {
    lip: Tensor,
    dark: Tensor,
    throat: Tensor,
    tongue: Tensor,
    teeth_upper: Tensor,
    teeth_lower: Tensor,
    lash: Tensor,
}

impl FaceRig {
    /// Prepares the rig for `layout` (source pixels) in a frame where the portrait sits at
    /// `placement`; `frame` is the fitted portrait `(3, H, W)`.
    pub fn new(
        layout: &FaceLayout,
        placement: &Placement,
        frame: &Tensor,
        size: FrameSize,
    ) -> Result<Self, Error> {
        let _no_grad = tch::no_grad_guard();
        let geometry = Geometry::new(layout, placement);
        let g = &geometry;
        let device = frame.device();
        let (frame_w, frame_h) = (i64::from(size.width), i64::from(size.height));
        // The ROI: around the head mask's ellipse.
        let ellipse: Vec<(f64, f64)> = (0..64)
            .map(|k| {
                let a = f64::from(k) / 64.0 * std::f64::consts::TAU;
                (
                    g.mask_axis_u * a.cos(),
                    g.mask_centre_v + g.mask_axis_v * a.sin(),
                )
            })
            .collect();
        let mut roi = bounding_rect(g, &ellipse, (0, 0), (frame_w, frame_h));
        roi.width = roi.width.min(frame_w - roi.left);
        roi.height = roi.height.min(frame_h - roi.top);
        let whole_frame = roi
            == Rect {
                left: 0,
                top: 0,
                width: frame_w,
                height: frame_h,
            };
        let roi_pixels = roi
            .cut(frame)
            .f_unsqueeze(0)
            .and_then(|t| t.f_contiguous())
            .context("cutting the face region")?;

        let options = (Kind::Float, device);
        let face_coordinates = |xs: Tensor, ys: Tensor| {
            let (dx, dy) = (
                xs.view([1, -1]) + (roi.left as f64 - f64::from(g.origin.x)),
                ys.view([-1, 1]) + (roi.top as f64 - f64::from(g.origin.y)),
            );
            (
                (&dx * g.cos + &dy * g.sin) / g.iod,
                (&dx * (-g.sin) + &dy * g.cos) / g.iod,
            )
        };
        // (Positions are ROI pixels; pixel centres at +0.5.)
        let (u, v) = face_coordinates(
            Tensor::arange(roi.width, options) + 0.5,
            Tensor::arange(roi.height, options) + 0.5,
        );
        let r = ((&u / g.mask_axis_u).square() + ((&v - g.mask_centre_v) / g.mask_axis_v).square())
            .sqrt();
        let inside = plane(&r.lt(1.0));

        // Lower region: the jaw's reach and the lip band, below the split.
        let neck = g.chin_v + 0.55;
        let lower_rect = bounding_rect(
            g,
            &corners((g.mouth_u - 1.25, g.mouth_u + 1.25), (SPLIT_V, neck + 0.05)),
            (roi.left, roi.top),
            (roi.width, roi.height),
        );
        let lower_rect = Rect {
            width: lower_rect.width.min(roi.width - lower_rect.left),
            height: lower_rect.height.min(roi.height - lower_rect.top),
            ..lower_rect
        };
        let field_step = (g.iod / FIELD_POINTS_PER_IOD).floor().max(1.0);
        let (lu, lv) = {
            let (xs, ys) = field_positions(&lower_rect, field_step, device);
            face_coordinates(xs, ys)
        };
        let t = ((&lu - g.mouth_u) / g.half_width).clamp(-1.0, 1.0);
        let lip_line = g.mouth_v + (g.corner_v - g.mouth_v) * t.square();
        // Teeth show at nearly full height over most of a smile's width.
        let flat =
            (1.0f64 - ((&lu - g.mouth_u) / g.half_width).pow_tensor_scalar(4)).clamp_min(0.0);
        let lower = LowerRegion {
            rect: lower_rect,
            mine: plane(&lower_rect.cut(&v).ge(SPLIT_V)),
            source_gap: flat.sqrt() * g.source_gap,
            jaw: 1.0f64 - smoothstep(0.55, 1.15, &(&lu - g.mouth_u).abs()),
            lip_band: (-((&lv - &lip_line) / 0.28).square()).exp(),
            lip_line,
            u: lu,
            v: lv,
        };

        // Upper region: both eyes and brows, above the split.
        let upper_rect = bounding_rect(
            g,
            &corners((-1.3, 1.3), (-0.95, SPLIT_V)),
            (roi.left, roi.top),
            (roi.width, roi.height),
        );
        let upper_rect = Rect {
            width: upper_rect.width.min(roi.width - upper_rect.left),
            height: upper_rect.height.min(roi.height - upper_rect.top),
            ..upper_rect
        };
        let (uu, uv) = {
            let (xs, ys) = field_positions(&upper_rect, field_step, device);
            face_coordinates(xs, ys)
        };
        let bump = |u0: f64, v0: f64, su: f64, sv: f64| {
            (-((&uu - u0) / su).square() - ((&uv - v0) / sv).square()).exp()
        };
        let upper = UpperRegion {
            rect: upper_rect,
            mine: plane(&upper_rect.cut(&v).lt(SPLIT_V)),
            brows: [bump(-0.5, -0.32, 0.35, 0.22), bump(0.5, -0.32, 0.35, 0.22)],
            inner_brows: bump(-0.22, -0.3, 0.14, 0.14) + bump(0.22, -0.3, 0.14, 0.14),
            u: uu,
            v: uv,
        };

        // Coarse grid for the head: rows and columns at exact pixel centres, the first
        // and the last included, so that corner-aligned interpolation hits them exactly.
        let whole_roi = Rect {
            left: 0,
            top: 0,
            width: roi.width,
            height: roi.height,
        };
        let (coarse_u, coarse_v) = {
            let (xs, ys) = field_positions(&whole_roi, HEAD_GRID_STEP, device);
            face_coordinates(xs, ys)
        };
        let coarse_r = ((&coarse_u / g.mask_axis_u).square()
            + ((&coarse_v - g.mask_centre_v) / g.mask_axis_v).square())
        .sqrt();
        let coarse_head = 1.0f64 - smoothstep(MASK_FULL, 1.0, &coarse_r);
        let coarse_parallax =
            (-(&coarse_u / 0.9).square() - ((&coarse_v - 0.5) / 1.3).square()).exp();

        let colour = |c: [f64; 3]| -> Result<Tensor, Error> {
            Tensor::f_from_slice(&c.map(|x| x as f32))
                .and_then(|t| t.f_to_device(device))
                .and_then(|t| t.f_view([1, 3, 1, 1]))
                .context("colours")
        };
        let colours = Colours {
            lip: colour(CAVITY_LIP)?,
            dark: colour(CAVITY_DARK)?,
            throat: colour(CAVITY_THROAT)?,
            tongue: colour(CAVITY_TONGUE)?,
            teeth_upper: colour(TEETH_UPPER)?,
            teeth_lower: colour(TEETH_LOWER)?,
            lash: colour(LASH)?,
        };
        Ok(Self {
            geometry,
            roi,
            whole_frame,
            frame: frame.shallow_clone(),
            roi_pixels,
            inside,
            lower,
            upper,
            coarse_u,
            coarse_v,
            coarse_head,
            coarse_parallax,
            colours,
        })
    }

    /// The mouth opening (0..1) at which the rendered lips match the portrait's.
    pub fn rest_mouth_open(&self) -> f32 {
        (self.geometry.source_gap / MAX_GAP).clamp(0.0, 1.0) as f32
    }

    /// Draws one frame: `(3, H, W)` float in `[0, 1]`.
    pub fn render(&self, motion: &FaceMotion) -> Tensor {
        let _no_grad = tch::no_grad_guard();
        let local = self.roi_pixels.copy();
        let actions = Actions::of(&motion.controls);
        let lower = self.finish(&self.lower.rect, self.lower_face(motion, &actions));
        let mut target = self.lower.rect.cut(&local);
        target.copy_(&lower.where_self(&self.lower.mine, &target));
        if let Some(layers) = self.upper_face(motion, &actions) {
            let upper = self.finish(&self.upper.rect, layers);
            let mut target = self.upper.rect.cut(&local);
            target.copy_(&upper.where_self(&self.upper.mine, &target));
        }
        let moved = self.move_head(&local, motion);
        // Outside the head mask the portrait stays exactly as it was.
        let region = moved
            .where_self(&self.inside, &self.roi_pixels)
            .squeeze_dim(0);
        let out = if self.whole_frame {
            region
        } else {
            let out = self.frame.copy();
            let mut target = self.roi.cut(&out);
            target.copy_(&region);
            out
        };
        // Head distance scales about the face's centre, halfway down to the mouth.
        let g = &self.geometry;
        let centre = g.frame_point(0.0, g.mouth_v * 0.55);
        zoom::move_closer(out, centre, motion.controls.distance)
    }

    /// Jaw, lips and the painted cavity, on the lower region's field grid.
    fn lower_face(&self, motion: &FaceMotion, actions: &Actions) -> Layers {
        let g = &self.geometry;
        let r = &self.lower;
        let (u, v) = (&r.u, &r.v);
        let open = f64::from(motion.mouth_open.clamp(0.0, 1.0));
        let round = f64::from(motion.mouth_round.clamp(0.0, 1.0));
        let spread = (f64::from(motion.mouth_width) + actions.mouth_width).clamp(-1.0, 1.0);
        let reach = spread * SPREAD_REACH - round * ROUND_REACH;
        // The opening spans the mouth as its corners now stand (rounding draws them in,
        // which makes the same opening look round).
        let half_width = (g.half_width + reach).max(0.15);
        let t = ((u - g.mouth_u) / half_width).clamp(-1.0, 1.0);
        // Up to the portrait's own opening the lips keep its shape (so the rest pose is
        // the portrait); any further opening is elliptic across the mouth.
        let wanted = open * MAX_GAP;
        let kept = (wanted / g.source_gap.max(1e-6)).min(1.0);
        let target_gap = &r.source_gap * kept
            + (1.0f64 - t.square()).clamp_min(0.0).sqrt() * (wanted - g.source_gap).max(0.0);
        let delta = &target_gap - &r.source_gap;
        let opening = delta.clamp_min(0.0);
        let closing = delta.clamp_max(0.0);
        // The chin follows the jaw: all of an opening, half of a closing (the upper lip
        // does the other half).
        let centre_delta = wanted - g.source_gap;
        let chin_move = &r.jaw * (centre_delta.max(0.0) + centre_delta.min(0.0) / 2.0);
        let anchor = g.mouth_v - 0.42;
        let neck = g.chin_v + 0.55;
        let gap_top = &r.lip_line - &r.source_gap / 2.0;
        let gap_bottom = &r.lip_line + &r.source_gap / 2.0;
        // Target knots (where things end up) and source knots (where they come from);
        // between t2 and t3 (an opening wider than the portrait's) lies the cavity. The
        // remap is piecewise linear; a segment of zero width (lips closed over the
        // portrait's teeth) is a jump, hence each segment's source span times a ramp that
        // becomes a step when the segment has no width.
        let t1 = &gap_top - &closing / 2.0;
        let t2 = &gap_bottom + &closing / 2.0;
        let t3 = &t2 + &opening;
        let t4 = (&chin_move + g.chin_v).maximum(&(&t3 + 0.05));
        let targets = [
            Tensor::full_like(u, anchor),
            t1,
            t2.shallow_clone(),
            t3.shallow_clone(),
            t4,
            Tensor::full_like(u, neck),
        ];
        let sources = [
            Tensor::full_like(u, anchor),
            gap_top,
            gap_bottom.shallow_clone(),
            gap_bottom,
            Tensor::full_like(u, g.chin_v),
            Tensor::full_like(u, neck),
        ];
        let mut v_source = v.clamp_max(anchor) + (v.clamp_min(neck) - neck);
        for k in 0..5 {
            let (ta, tb) = (&targets[k], &targets[k + 1]);
            let ramp = ((v - ta) / (tb - ta).clamp_min(1e-6)).clamp(0.0, 1.0);
            v_source += ramp * (&sources[k + 1] - &sources[k]);
        }
        // Lips spread or round.
        let t_wide = (u - g.mouth_u) / g.half_width;
        let beyond = smoothstep(1.0, 1.8, &t_wide.abs());
        let u_source = u - t_wide.clamp(-1.0, 1.0) * (1.0f64 - beyond) * &r.lip_band * reach;
        if actions.moves_lower_face() {
            // Mouth corners and cheeks lifted (or lowered) by smooth bumps: a point
            // shows what lay `lift` below it.
            let bump = |u0: f64, v0: f64, su: f64, sv: f64| {
                (-((u - u0) / su).square() - ((v - v0) / sv).square()).exp()
            };
            for (side, lift) in [
                (-1.0, actions.corner_lift[0]),
                (1.0, actions.corner_lift[1]),
            ] {
                if lift != 0.0 {
                    let corner = g.mouth_u + side * half_width;
                    v_source += bump(corner, g.corner_v, 0.3, 0.25) * lift;
                }
            }
            if actions.cheek_raise != 0.0 {
                let cheeks = bump(-0.55, 0.48, 0.25, 0.15) + bump(0.55, 0.48, 0.25, 0.15);
                v_source += cheeks * actions.cheek_raise;
            }
        }
        let mut layers = Layers::new(u_source, v_source);

        // Nothing to paint unless the mouth opens wider than the portrait's.
        if centre_delta <= 0.0 {
            return layers;
        }
        // Paint the opened mouth, softly edged (over about 2% of the IOD, at least 1.5
        // pixels): the lips' wet inner side at the edges, a cavity darkening towards the
        // back of the mouth, under the upper teeth and into the corners, a tongue low in
        // a wide mouth, the lower teeth above the lower lip as the jaw drops.
        let c = &self.colours;
        let gap_px = (&t3 - &t2) * g.iod;
        let from_top = (v - &t2) * g.iod; // pixels below the upper edge of the opening
        let from_bottom = (&t3 - v) * g.iod; // pixels above the lower lip
        let soft = (0.02 * g.iod).max(1.5);
        let inside_gap = ((&from_top + 0.5) / soft).clamp(0.0, 1.0)
            * ((&from_bottom + 0.5) / soft).clamp(0.0, 1.0);
        // No paint for sub-pixel openings: they would read as lines, not as a mouth.
        let cavity_alpha = &inside_gap * ((&gap_px - 0.6).clamp(0.0, 1.0));
        let depth = (v - &t2) / (&t3 - &t2).clamp_min(1e-4); // 0 at the top .. 1 at the bottom
        let across = t.abs();
        // Light reaches the middle and the lower part; the top (in the upper teeth's
        // shadow) and the corners stay darkest.
        let light = smoothstep(0.05, 0.6, &depth) * (1.0f64 - smoothstep(0.35, 1.0, &across));
        let inner_lip =
            1.0f64 - smoothstep(0.0, 0.035 * g.iod, &from_bottom.minimum(&(&from_top * 1.5)));
        let cavity = &c.throat
            + (&c.dark - &c.throat) * plane(&light)
            + (&c.lip - &c.dark) * plane(&(inner_lip * 0.8));
        layers.paint(&cavity, &cavity_alpha);
        let wide = |from: f64, to: f64| smoothstep(from * g.iod, to * g.iod, &gap_px);
        // The tongue: a soft ellipse resting behind the lower teeth.
        let tongue = (1.0f64
            - (((&t) / 0.62).square() + ((&depth - 0.9) / 0.45).square()).clamp(0.0, 1.0))
        .sqrt()
            * wide(0.06, 0.16)
            * &cavity_alpha;
        let tongue_colour = &c.tongue * plane(&(0.8 + (1.0f64 - &depth) * 0.4));
        layers.paint(&tongue_colour, &(tongue * 0.85));
        // Lower teeth: a band above the lower lip, as tall as a third of the opening
        // (at most 0.055 IOD), across the middle, shaded towards the sides.
        let band = (&gap_px * 0.3).clamp_max(0.055 * g.iod);
        let middle_lower = 1.0f64 - smoothstep(0.3, 0.62, &across);
        let lower_teeth = ((&from_bottom - 0.3) / soft).clamp(0.0, 1.0)
            * (1.0f64 - ((&from_bottom - &band) / soft).clamp(0.0, 1.0))
            * &middle_lower
            * wide(0.07, 0.16)
            * &cavity_alpha
            * 0.9;
        let teeth_shade = 1.0f64 - smoothstep(0.0, 0.62, &across) * 0.25;
        layers.paint(&(&c.teeth_lower * plane(&teeth_shade)), &lower_teeth);
        // Upper teeth only where the portrait shows none.
        if g.source_gap < 0.04 {
            let middle = 1.0f64 - smoothstep(0.45, 0.75, &across);
            let band = (&gap_px * 0.3).clamp_max(0.075 * g.iod);
            let upper_teeth = ((&from_top - 0.2) / soft).clamp(0.0, 1.0)
                * (1.0f64 - ((&from_top - &band) / soft).clamp(0.0, 1.0))
                * wide(0.08, 0.16)
                * &middle
                * &cavity_alpha;
            layers.paint(&c.teeth_upper, &upper_teeth);
        }
        layers
    }

    /// Eyelids, irises and brows on the upper region's field grid, or `None` when all
    /// rest.
    fn upper_face(&self, motion: &FaceMotion, actions: &Actions) -> Option<Layers> {
        let brow = (f64::from(motion.brow_raise.clamp(0.0, 1.0)) + actions.brow_raise)
            .clamp(0.0, 1.5)
            * BROW_LIFT;
        let narrow = (-actions.lids).clamp(0.0, 1.0) * LID_NARROW;
        let widen = actions.lids.clamp(0.0, 1.0) * LID_WIDEN;
        let closure = |blink: f32| 1.0 - (1.0 - f64::from(blink.clamp(0.0, 1.0))) * (1.0 - narrow);
        let blinks = [
            (-0.5, closure(motion.blink_left)),
            (0.5, closure(motion.blink_right)),
        ];
        let g = &self.geometry;
        let iris = expression::iris_shift(&motion.controls);
        // The iris may move at most so far that the sclera beside it is squeezed, never
        // folded (the weight's steepest slope is 1.5 over its falloff).
        let limit = 0.6 * (g.eye_half_width - IRIS_RADIUS).max(0.0);
        let iris = (iris.0.clamp(-limit, limit), iris.1.clamp(-limit, limit));
        let knit = actions.brow_knit.clamp(0.0, 1.0);
        let rests = brow <= 0.0
            && blinks.iter().all(|(_, b)| *b <= 0.0)
            && !actions.moves_upper_face()
            && iris == (0.0, 0.0);
        if rests {
            return None;
        }
        let r = &self.upper;
        let (u, v) = (&r.u, &r.v);
        let mut u_source = u.shallow_clone();
        let mut v_source =
            v + (&r.brows[0] + &r.brows[1]) * brow + &r.inner_brows * actions.brow_inner;
        if knit > 0.0 {
            // Lowered and drawn in: each brow shows what lay above it and further out.
            v_source -= (&r.brows[0] + &r.brows[1]) * (knit * KNIT_DOWN);
            u_source = u_source - &r.brows[0] * (knit * KNIT_IN) + &r.brows[1] * (knit * KNIT_IN);
        }
        let feather = 0.8 / g.iod; // about one pixel, in face units
        let mut lashes = Tensor::zeros_like(u);
        for (eye_u, blink) in blinks {
            if blink <= 0.0 && widen == 0.0 {
                continue;
            }
            let te = (u - eye_u) / g.eye_half_width;
            let profile = (1.0f64 - te.square()).clamp_min(0.0).sqrt();
            let lid_rest = &profile * (-LID_UP);
            let lid_floor = &profile * (LID_DOWN * 0.85);
            let lid_open = &lid_rest - &profile * widen;
            let lid = &lid_open + (&lid_floor - &lid_open) * blink;
            // The lid skin above the eye slides down over it (or up, widened); below the
            // lid's edge the eye stays as it was (what the lid covers is simply not
            // seen), except that a lid raised above its rest shows the eye stretched up.
            let span = (&lid - LID_SKIN_TOP).clamp_min(1e-4);
            let stretched = LID_SKIN_TOP + (v - LID_SKIN_TOP) * (&lid_rest - LID_SKIN_TOP) / &span;
            let in_eye = profile.gt(0.0);
            let covered = v
                .ge(LID_SKIN_TOP)
                .logical_and(&v.lt_tensor(&lid))
                .logical_and(&in_eye);
            v_source = stretched.where_self(&covered, &v_source);
            if widen > 0.0 {
                let raised = lid.lt_tensor(&lid_rest);
                let below = (&lid_floor - &lid).clamp_min(1e-4);
                let opened = &lid_rest + (v - &lid) * (&lid_floor - &lid_rest) / below;
                let revealed = v
                    .ge_tensor(&lid)
                    .logical_and(&v.lt_tensor(&lid_floor))
                    .logical_and(&raised)
                    .logical_and(&in_eye);
                v_source = opened.where_self(&revealed, &v_source);
            }
            if blink > 0.0 {
                let width = 0.022 + 0.5 * feather;
                let line = (-((v - &lid) / width).square()).exp()
                    * profile.sqrt()
                    * ((blink * 1.6).min(1.0) * 0.75);
                lashes = lashes.maximum(&line);
            }
        }
        if iris != (0.0, 0.0) {
            // The irises turn: inside each eye opening the picture moves by the iris's
            // displacement, squeezing the sclera ahead of it and stretching it behind;
            // nothing moves at the eye's corners, and the lids follow a little (as they
            // do a vertical gaze).
            let mut weight = Tensor::zeros_like(u);
            for eye_u in [-0.5, 0.5] {
                let across = (&u_source - eye_u).abs();
                weight += (1.0f64 - smoothstep(IRIS_RADIUS, g.eye_half_width, &across))
                    * (1.0f64 - smoothstep(0.07, 0.2, &v_source.abs()));
            }
            u_source = &u_source - &weight * iris.0;
            v_source = &v_source - &weight * iris.1;
        }
        let mut layers = Layers::new(u_source, v_source);
        layers.paint(&self.colours.lash, &lashes);
        Some(layers)
    }

    /// Samples the portrait for a region pass and paints its layers over it, at full
    /// resolution: `(1, 3, h, w)` for the region `rect`.
    fn finish(&self, rect: &Rect, layers: Layers) -> Tensor {
        let (height, width) = (rect.height, rect.width);
        let coarse = layers.u_source.size() != [height, width];
        let fine = |t: &Tensor| {
            if coarse {
                t.upsample_bilinear2d([height, width], true, None, None)
            } else {
                t.shallow_clone()
            }
        };
        let grid = fine(&self.grid(&layers.u_source, &layers.v_source));
        let sampled = self
            .roi_pixels
            .grid_sampler_2d(&grid.permute([0, 2, 3, 1]), 0, 1, false);
        if !layers.painted {
            return sampled;
        }
        sampled * fine(&layers.transmittance) + fine(&layers.colour)
    }

    /// Head motion over the whole ROI: `image` resampled `(1, 3, h, w)`.
    fn move_head(&self, image: &Tensor, motion: &FaceMotion) -> Tensor {
        let still = [
            motion.yaw,
            motion.pitch,
            motion.roll,
            motion.shift_x,
            motion.shift_y,
        ]
        .iter()
        .all(|x| *x == 0.0);
        if still {
            return image.shallow_clone();
        }
        let g = &self.geometry;
        let (u, v) = (&self.coarse_u, &self.coarse_v);
        let pivot_v = g.chin_v + 0.6;
        let (roll_sin, roll_cos) = f64::from(motion.roll).sin_cos();
        let pv = v - pivot_v;
        let roll_du = u * (roll_cos - 1.0) - &pv * roll_sin;
        let roll_dv = u * roll_sin + &pv * (roll_cos - 1.0);
        let (yaw, pitch) = (f64::from(motion.yaw), f64::from(motion.pitch));
        let du = (roll_du
            + &self.coarse_parallax * (yaw * YAW_PARALLAX)
            + (yaw * 0.25 + f64::from(motion.shift_x)))
            * &self.coarse_head;
        let dv = (roll_dv
            + &self.coarse_parallax * (pitch * PITCH_PARALLAX)
            + (pitch * 0.2 + f64::from(motion.shift_y)))
            * &self.coarse_head;
        // The sampling grid itself is smooth: interpolate it (corner-aligned, exact at
        // the coarse points, which sit on the first and last pixel centres).
        let grid = self.grid(&(u - du), &(v - dv)).upsample_bilinear2d(
            [self.roi.height, self.roi.width],
            true,
            None,
            None,
        );
        image.grid_sampler_2d(&grid.permute([0, 2, 3, 1]), 0, 1, false)
    }

    /// grid_sample coordinates `(1, 2, h, w)` (x then y, in [-1, 1] over the ROI, pixel
    /// centres at half steps: align_corners=false) of face points.
    fn grid(&self, u: &Tensor, v: &Tensor) -> Tensor {
        let g = &self.geometry;
        let x = (u * g.cos - v * g.sin) * g.iod + (f64::from(g.origin.x) - self.roi.left as f64);
        let y = (u * g.sin + v * g.cos) * g.iod + (f64::from(g.origin.y) - self.roi.top as f64);
        Tensor::stack(
            &[
                x * (2.0 / self.roi.width as f64) - 1.0,
                y * (2.0 / self.roi.height as f64) - 1.0,
            ],
            0,
        )
        .unsqueeze(0)
    }
}
