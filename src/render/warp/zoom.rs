//! Head distance for the builtin renderer: the frame scaled about the face.

use tch::Tensor;

use super::field::{Rect, field_positions, smoothstep};

/// The zoom is computed on a grid this many pixels apart (at most); it is full up to
/// this share of the way to the frame's edges.
const ZOOM_GRID_STEP: f64 = 8.0;
const ZOOM_FULL: f64 = 0.4;

/// Head distance: the frame `(3, H, W)` scaled about the face's centre `centre`
/// (frame pixels), fully over the head and shoulders and less and less towards the
/// frame's edges, which stay where they are: moving away needs nothing from outside
/// the frame, and the background stretches over the whole frame instead of around
/// the head.
pub fn move_closer(frame: Tensor, centre: (f64, f64), distance: f32) -> Tensor {
    let zoom = 1.0 - 1.0 / f64::from(distance.clamp(0.5, 2.0));
    if zoom == 0.0 {
        return frame;
    }
    let (height, width) = (frame.size()[1], frame.size()[2]);
    let (w, h) = (width as f64, height as f64);
    let (cx, cy) = centre;
    let (cx, cy) = (cx.clamp(1.0, w - 1.0), cy.clamp(1.0, h - 1.0));
    let whole = Rect {
        left: 0,
        top: 0,
        width,
        height,
    };
    let (xs, ys) = field_positions(&whole, ZOOM_GRID_STEP, frame.device());
    let (dx, dy) = (xs.view([1, -1]) - cx, ys.view([-1, 1]) - cy);
    // How far towards the frame's edge each point lies (0 at the centre, 1 on the
    // edge), as a rounded box.
    let share = |d: &Tensor, before: f64, after: f64| {
        (d / before)
            .abs()
            .where_self(&d.lt(0.0), &(d / after).abs())
    };
    let rho = (share(&dx, cx, w - cx).pow_tensor_scalar(4)
        + share(&dy, cy, h - cy).pow_tensor_scalar(4))
    .pow_tensor_scalar(0.25);
    let weight = 1.0f64 - smoothstep(ZOOM_FULL, 1.0, &rho);
    let x = &dx * (1.0f64 - &weight * zoom) + cx;
    let y = &dy * (1.0f64 - &weight * zoom) + cy;
    let grid = Tensor::stack(&[x * (2.0 / w) - 1.0, y * (2.0 / h) - 1.0], 0)
        .unsqueeze(0)
        .upsample_bilinear2d([height, width], true, None, None);
    frame
        .unsqueeze(0)
        .grid_sampler_2d(&grid.permute([0, 2, 3, 1]), 0, 1, false)
        .squeeze_dim(0)
}
