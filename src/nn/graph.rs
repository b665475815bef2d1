//! Runs a network given as an operator list: MediaPipe's face models, converted from
//! TFLite by tools/mediapipe/convert.py into safetensors whose metadata holds the graph
//! ("graph": JSON, every option already resolved: explicit paddings, shapes, axes).
//!
//! Activations of rank 4 are held as NCHW (libtorch's layout) although the graph speaks
//! NHWC (TFLite's): the few operators that name an axis or a shape (pad, reshape,
//! concatenation, slice) translate; the converter already wrote filters and elementwise
//! constants in the NCHW layout. MediaPipe's three custom operators (a crop matrix from
//! landmarks, a bilinear crop of a feature map, landmarks through a matrix) are here too,
//! following their TFLite kernels (mediapipe/util/tflite/operations, version 2).
//! Everything computes in float32; the weights are stored as float16 like the originals.

use std::collections::HashMap;

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("network {name} is damaged: {reason}")]
    Corrupt { name: String, reason: String },
    #[error("network {name}: {reason}")]
    Run { name: String, reason: String },
}

/// A value an operator reads: another operator's output (by tensor id) or a weight.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Operand {
    Id(usize),
    Weight(String),
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Activation {
    None,
    Relu,
    Relu6,
}

/// The graph as the converter writes it.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum OpSpec {
    Conv2d {
        input: usize,
        weight: String,
        bias: Option<String>,
        stride: [i64; 2],
        dilation: [i64; 2],
        pad: [i64; 4],
        groups: i64,
        act: Activation,
        out: usize,
    },
    MaxPool {
        input: usize,
        kernel: [i64; 2],
        stride: [i64; 2],
        pad: [i64; 4],
        act: Activation,
        out: usize,
    },
    Add {
        a: Operand,
        b: Operand,
        act: Activation,
        out: usize,
    },
    Mul {
        a: Operand,
        b: Operand,
        act: Activation,
        out: usize,
    },
    Relu {
        input: usize,
        out: usize,
    },
    Prelu {
        input: usize,
        alpha: Operand,
        out: usize,
    },
    Pad {
        input: usize,
        pads: Vec<[i64; 2]>,
        out: usize,
    },
    Reshape {
        input: usize,
        shape: Vec<i64>,
        out: usize,
    },
    Concat {
        inputs: Vec<usize>,
        axis: usize,
        rank: usize,
        act: Activation,
        out: usize,
    },
    Slice {
        input: usize,
        begin: Vec<i64>,
        end: Vec<i64>,
        out: usize,
    },
    LandmarksToMatrix {
        input: usize,
        left: usize,
        right: usize,
        target_rotation: f64,
        subset: Vec<usize>,
        output_size: [f64; 2],
        scale: [f64; 2],
        out: usize,
    },
    TransformTensor {
        input: usize,
        matrix: usize,
        output_size: [i64; 2],
        out: usize,
    },
    TransformLandmarks {
        input: usize,
        matrix: usize,
        out: usize,
    },
}

#[derive(Debug, Deserialize)]
struct GraphInput {
    id: usize,
    shape: Vec<i64>,
}

#[derive(Debug, Deserialize)]
struct GraphOutput {
    name: String,
    id: usize,
}

#[derive(Debug, Deserialize)]
struct GraphSpec {
    format: u32,
    inputs: Vec<GraphInput>,
    outputs: Vec<GraphOutput>,
    ops: Vec<OpSpec>,
}

/// A loaded network, ready to run on the CPU.
pub struct Graph {
    name: String,
    spec: GraphSpec,
    weights: HashMap<String, Tensor>,
    /// The file's other metadata entries (what the converter adds beside the graph).
    metadata: HashMap<String, String>,
    /// One past the largest tensor id.
    slots: usize,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("name", &self.name)
            .field("ops", &self.spec.ops.len())
            .finish()
    }
}

impl Graph {
    /// Reads a converted network from safetensors bytes; `name` is how errors call it.
    pub fn load(bytes: &[u8], name: &str) -> Result<Self, GraphError> {
        let corrupt = |reason: String| GraphError::Corrupt {
            name: name.to_owned(),
            reason,
        };
        let (_, metadata) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
        let graph_json = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("graph"))
            .ok_or_else(|| corrupt("its metadata has no \"graph\" entry".to_owned()))?;
        let extra = metadata.metadata().clone().unwrap_or_default();
        let spec: GraphSpec = serde_json::from_str(graph_json)
            .map_err(|e| corrupt(format!("its graph cannot be read: {e}")))?;
        if spec.format != 1 {
            return Err(corrupt(format!(
                "graph format {} is not the one this build reads (1)",
                spec.format
            )));
        }
        let tensors =
            safetensors::SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
        let mut weights = HashMap::new();
        for (key, view) in tensors.tensors() {
            let kind = match view.dtype() {
                safetensors::Dtype::F16 => Kind::Half,
                safetensors::Dtype::F32 => Kind::Float,
                other => return Err(corrupt(format!("tensor {key} is {other:?}"))),
            };
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)
                .and_then(|t| t.f_to_kind(Kind::Float))
                .map_err(|e| corrupt(format!("tensor {key}: {e}")))?;
            weights.insert(key, tensor);
        }
        let mut slots = 0;
        let mut produced = std::collections::HashSet::new();
        for input in &spec.inputs {
            produced.insert(input.id);
            slots = slots.max(input.id + 1);
        }
        // Every operator reads only what exists before it: a damaged graph is refused
        // here, not half-way through a run.
        for (index, op) in spec.ops.iter().enumerate() {
            let (reads, weight_reads, out) = op.references();
            for id in reads {
                if !produced.contains(&id) {
                    return Err(corrupt(format!(
                        "operator {index} reads tensor {id} before anything writes it"
                    )));
                }
            }
            for key in weight_reads {
                if !weights.contains_key(key) {
                    return Err(corrupt(format!(
                        "operator {index} needs missing weight {key}"
                    )));
                }
            }
            produced.insert(out);
            slots = slots.max(out + 1);
        }
        for output in &spec.outputs {
            if !produced.contains(&output.id) {
                return Err(corrupt(format!("output {} is never computed", output.name)));
            }
        }
        Ok(Self {
            name: name.to_owned(),
            spec,
            weights,
            metadata: extra,
            slots,
        })
    }

    /// A metadata entry of the file.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// The input's shape, NHWC as in the original model.
    pub fn input_shape(&self) -> &[i64] {
        &self.spec.inputs[0].shape
    }

    /// Runs on `input` (NHWC float, the model's input shape); returns every output by
    /// its name in the original model, rank-4 outputs back in NHWC.
    pub fn run(&self, input: &Tensor) -> Result<HashMap<String, Tensor>, GraphError> {
        let _no_grad = tch::no_grad_guard();
        let fail = |reason: String| GraphError::Run {
            name: self.name.clone(),
            reason,
        };
        if input.size() != self.input_shape() {
            return Err(fail(format!(
                "input has shape {:?}, expected {:?}",
                input.size(),
                self.input_shape()
            )));
        }
        let mut values: Vec<Option<Tensor>> = (0..self.slots).map(|_| None).collect();
        values[self.spec.inputs[0].id] = Some(
            input
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .permute([0, 3, 1, 2])
                .contiguous(),
        );
        for (index, op) in self.spec.ops.iter().enumerate() {
            let (result, out) = self
                .step(op, &values)
                .map_err(|e| fail(format!("operator {index}: {e}")))?;
            values[out] = Some(result);
        }
        let mut outputs = HashMap::new();
        for output in &self.spec.outputs {
            let value = values[output.id].as_ref().expect("checked at load");
            outputs.insert(output.name.clone(), to_nhwc(value));
        }
        Ok(outputs)
    }

    fn operand<'a>(&'a self, operand: &Operand, values: &'a [Option<Tensor>]) -> &'a Tensor {
        match operand {
            Operand::Id(id) => values[*id].as_ref().expect("checked at load"),
            Operand::Weight(key) => &self.weights[key],
        }
    }

    fn step(
        &self,
        op: &OpSpec,
        values: &[Option<Tensor>],
    ) -> Result<(Tensor, usize), tch::TchError> {
        let value = |id: &usize| values[*id].as_ref().expect("checked at load");
        Ok(match op {
            OpSpec::Conv2d {
                input,
                weight,
                bias,
                stride,
                dilation,
                pad,
                groups,
                act,
                out,
            } => {
                let [top, bottom, left, right] = *pad;
                let x = value(input);
                let (x, padding) = if top == bottom && left == right {
                    (x.shallow_clone(), [top, left])
                } else {
                    (x.f_constant_pad_nd([left, right, top, bottom])?, [0, 0])
                };
                let y = x.f_conv2d(
                    &self.weights[weight],
                    bias.as_ref().map(|b| &self.weights[b]),
                    *stride,
                    padding,
                    *dilation,
                    *groups,
                )?;
                (activate(y, *act), *out)
            }
            OpSpec::MaxPool {
                input,
                kernel,
                stride,
                pad,
                act,
                out,
            } => {
                let [top, bottom, left, right] = *pad;
                let x = value(input);
                // TFLite's SAME pooling ignores the padding: pad with the lowest value.
                let x = if pad.iter().any(|&p| p != 0) {
                    x.f_pad(
                        [left, right, top, bottom],
                        "constant",
                        Some(f64::from(f32::MIN)),
                    )?
                } else {
                    x.shallow_clone()
                };
                let y = x.f_max_pool2d(*kernel, *stride, [0, 0], [1, 1], false)?;
                (activate(y, *act), *out)
            }
            OpSpec::Add { a, b, act, out } => {
                let y = self.operand(a, values).f_add(self.operand(b, values))?;
                (activate(y, *act), *out)
            }
            OpSpec::Mul { a, b, act, out } => {
                let y = self.operand(a, values).f_mul(self.operand(b, values))?;
                (activate(y, *act), *out)
            }
            OpSpec::Relu { input, out } => (value(input).f_relu()?, *out),
            OpSpec::Prelu { input, alpha, out } => {
                let x = value(input);
                let alpha = self.operand(alpha, values);
                (x.f_clamp_min(0.0)? + alpha * x.f_clamp_max(0.0)?, *out)
            }
            OpSpec::Pad { input, pads, out } => {
                let x = value(input);
                // constant_pad_nd takes (before, after) pairs from the last dimension.
                let order: Vec<usize> = if x.dim() == 4 {
                    vec![2, 1, 3, 0] // NCHW's W, H, C, N in NHWC numbering
                } else {
                    (0..pads.len()).rev().collect()
                };
                let flat: Vec<i64> = order.iter().flat_map(|&d| pads[d]).collect();
                (x.f_constant_pad_nd(flat)?, *out)
            }
            OpSpec::Reshape { input, shape, out } => {
                let y = to_nhwc(value(input)).f_reshape(shape.as_slice())?;
                (to_internal(y), *out)
            }
            OpSpec::Concat {
                inputs,
                axis,
                rank,
                act,
                out,
            } => {
                let parts: Vec<&Tensor> = inputs.iter().map(value).collect();
                let dim = if *rank == 4 {
                    [0, 2, 3, 1][*axis]
                } else {
                    *axis
                };
                (activate(Tensor::f_cat(&parts, dim as i64)?, *act), *out)
            }
            OpSpec::Slice {
                input,
                begin,
                end,
                out,
            } => {
                let mut y = to_nhwc(value(input));
                for (axis, (&b, &e)) in begin.iter().zip(end).enumerate() {
                    y = y.f_narrow(axis as i64, b, e - b)?;
                }
                (to_internal(y), *out)
            }
            OpSpec::LandmarksToMatrix {
                input,
                left,
                right,
                target_rotation,
                subset,
                output_size,
                scale,
                out,
            } => {
                let points = host_points(value(input), 3)?;
                let matrix = crop_matrix_from_landmarks(
                    &points,
                    (*left, *right),
                    *target_rotation,
                    subset,
                    *output_size,
                    *scale,
                );
                (Tensor::from_slice(&matrix).view([1, 4, 4]), *out)
            }
            OpSpec::TransformTensor {
                input,
                matrix,
                output_size,
                out,
            } => {
                let m = host_values(value(matrix))?;
                (crop_feature_map(value(input), &m, *output_size)?, *out)
            }
            OpSpec::TransformLandmarks { input, matrix, out } => {
                let x = value(input);
                let m = host_values(value(matrix))?;
                let dims = x.size()[2];
                let xs = x.f_select(2, 0)?;
                let ys = x.f_select(2, 1)?;
                let tx = &xs * f64::from(m[0]) + &ys * f64::from(m[1]) + f64::from(m[3]);
                let ty = &xs * f64::from(m[4]) + &ys * f64::from(m[5]) + f64::from(m[7]);
                let mut parts = vec![tx, ty];
                if dims > 2 {
                    parts.push(x.f_narrow(2, 2, dims - 2)?.squeeze_dim(2));
                }
                (Tensor::f_stack(&parts, 2)?, *out)
            }
        })
    }
}

impl OpSpec {
    /// (tensor ids read, weight keys read, tensor id written).
    fn references(&self) -> (Vec<usize>, Vec<&str>, usize) {
        let mut ids = Vec::new();
        let mut keys = Vec::new();
        fn operand<'a>(o: &'a Operand, ids: &mut Vec<usize>, keys: &mut Vec<&'a str>) {
            match o {
                Operand::Id(id) => ids.push(*id),
                Operand::Weight(key) => keys.push(key.as_str()),
            }
        }
        let out = match self {
            OpSpec::Conv2d {
                input,
                weight,
                bias,
                out,
                ..
            } => {
                ids.push(*input);
                let mut k = vec![weight.as_str()];
                k.extend(bias.as_deref());
                return (ids, k, *out);
            }
            OpSpec::Add { a, b, out, .. } | OpSpec::Mul { a, b, out, .. } => {
                operand(a, &mut ids, &mut keys);
                operand(b, &mut ids, &mut keys);
                *out
            }
            OpSpec::Prelu { input, alpha, out } => {
                ids.push(*input);
                operand(alpha, &mut ids, &mut keys);
                *out
            }
            OpSpec::MaxPool { input, out, .. }
            | OpSpec::Relu { input, out }
            | OpSpec::Pad { input, out, .. }
            | OpSpec::Reshape { input, out, .. }
            | OpSpec::Slice { input, out, .. }
            | OpSpec::LandmarksToMatrix { input, out, .. } => {
                ids.push(*input);
                *out
            }
            OpSpec::Concat { inputs, out, .. } => {
                ids.extend(inputs);
                *out
            }
            OpSpec::TransformTensor {
                input, matrix, out, ..
            }
            | OpSpec::TransformLandmarks { input, matrix, out } => {
                ids.extend([*input, *matrix]);
                *out
            }
        };
        (ids, keys, out)
    }
}

fn activate(x: Tensor, act: Activation) -> Tensor {
    match act {
        Activation::None => x,
        Activation::Relu => x.relu(),
        Activation::Relu6 => x.clamp(0.0, 6.0),
    }
}

fn to_nhwc(x: &Tensor) -> Tensor {
    if x.dim() == 4 {
        x.permute([0, 2, 3, 1]).contiguous()
    } else {
        x.shallow_clone()
    }
}

fn to_internal(x: Tensor) -> Tensor {
    if x.dim() == 4 {
        x.permute([0, 3, 1, 2]).contiguous()
    } else {
        x
    }
}

fn host_values(x: &Tensor) -> Result<Vec<f32>, tch::TchError> {
    Vec::<f32>::try_from(x.to_kind(Kind::Float).flatten(0, -1))
}

/// The landmarks of a `[1, N, dims]` tensor as (x, y) pairs.
fn host_points(x: &Tensor, dims: usize) -> Result<Vec<(f64, f64)>, tch::TchError> {
    let flat = host_values(x)?;
    Ok(flat
        .chunks_exact(dims)
        .map(|p| (f64::from(p[0]), f64::from(p[1])))
        .collect())
}

/// MediaPipe's Landmarks2TransformMatrix (v2): the row-major 4x4 matrix that maps a
/// pixel of the `output_size` crop to the landmarks' space: the crop is the box around
/// the `subset` points in the frame rotated to make the left-right line level, scaled
/// by `scale`.
fn crop_matrix_from_landmarks(
    points: &[(f64, f64)],
    (left, right): (usize, usize),
    target_rotation: f64,
    subset: &[usize],
    [output_height, output_width]: [f64; 2],
    [scale_y, scale_x]: [f64; 2],
) -> Vec<f32> {
    let get = |i: usize| points.get(i).copied().unwrap_or((0.0, 0.0));
    let (l, r) = (get(left), get(right));
    let rotation = target_rotation - (r.1 - l.1).atan2(r.0 - l.0);
    let (sin, cos) = rotation.sin_cos();
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for &i in subset {
        let (x, y) = get(i);
        let (u, v) = (cos * x - sin * y, sin * x + cos * y);
        (x0, y0, x1, y1) = (x0.min(u), y0.min(v), x1.max(u), y1.max(v));
    }
    let (width, height) = (x1 - x0, y1 - y0);
    let (mu, mv) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    // Back through the inverse rotation: the crop centre in landmark space.
    let (cx, cy) = (cos * mu + sin * mv, -sin * mu + cos * mv);
    // centre shift * rotation(-rotation) * scale * (-half output) shift.
    let (sx, sy) = (
        scale_x * width / output_width,
        scale_y * height / output_height,
    );
    let (rc, rs) = (cos, -sin); // rotation by -rotation
    let (hx, hy) = (-output_width / 2.0, -output_height / 2.0);
    let a = rc * sx;
    let b = -rs * sy;
    let d = rs * sx;
    let e = rc * sy;
    let c = a * hx + b * hy + cx;
    let f = d * hx + e * hy + cy;
    [
        a, b, 0.0, c, d, e, 0.0, f, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0,
    ]
    .iter()
    .map(|&v| v as f32)
    .collect()
}

/// MediaPipe's TransformTensorBilinear (v2): crops the NCHW feature map `x` through the
/// first two rows of `m` (output pixel to input pixel, corrected to pixel centres);
/// samples outside the map are zero.
fn crop_feature_map(
    x: &Tensor,
    m: &[f32],
    [out_h, out_w]: [i64; 2],
) -> Result<Tensor, tch::TchError> {
    let (in_h, in_w) = (x.size()[2], x.size()[3]);
    let m: Vec<f64> = m.iter().map(|&v| f64::from(v)).collect();
    let x_shift = m[3] + m[0] * 0.5 + m[1] * 0.5 - 0.5;
    let y_shift = m[7] + m[4] * 0.5 + m[5] * 0.5 - 0.5;
    let options = (Kind::Float, Device::Cpu);
    let u = Tensor::f_arange(out_w, options)?.view([1, -1]);
    let v = Tensor::f_arange(out_h, options)?.view([-1, 1]);
    let tx = &u * m[0] + &v * m[1] + x_shift;
    let ty = &u * m[4] + &v * m[5] + y_shift;
    let inside = tx.ge(0.0) * tx.le((in_w - 1) as f64) * ty.ge(0.0) * ty.le((in_h - 1) as f64);
    // grid_sample with corner alignment: -1 and 1 are the centres of the edge pixels.
    let gx = &tx / ((in_w - 1).max(1) as f64) * 2.0 - 1.0;
    let gy = &ty / ((in_h - 1).max(1) as f64) * 2.0 - 1.0;
    let grid = Tensor::f_stack(&[gx, gy], 2)?.unsqueeze(0);
    let sampled = x.f_grid_sampler(&grid, 0, 0, true)?;
    Ok(sampled * inside.to_kind(Kind::Float).view([1, 1, out_h, out_w]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_matrix_of_level_landmarks_is_a_scaled_shift() {
        // A square of side 8 centred at (10, 20), left-right level: the crop (16x16 with
        // scale 1.5) covers 12 units, so one crop pixel is 0.75 units.
        let points = vec![(6.0, 16.0), (14.0, 16.0), (6.0, 24.0), (14.0, 24.0)];
        let m = crop_matrix_from_landmarks(
            &points,
            (0, 1),
            0.0,
            &[0, 1, 2, 3],
            [16.0, 16.0],
            [1.5, 1.5],
        );
        let map = |u: f64, v: f64| {
            (
                f64::from(m[0]) * u + f64::from(m[1]) * v + f64::from(m[3]),
                f64::from(m[4]) * u + f64::from(m[5]) * v + f64::from(m[7]),
            )
        };
        let (x, y) = map(8.0, 8.0);
        assert!(
            (x - 10.0).abs() < 1e-5 && (y - 20.0).abs() < 1e-5,
            "{x} {y}"
        );
        let (x, y) = map(0.0, 0.0);
        assert!((x - 4.0).abs() < 1e-5 && (y - 14.0).abs() < 1e-5, "{x} {y}");
    }

    #[test]
    fn crop_matrix_follows_a_tilted_left_right_line() {
        // Tilted by 30 degrees: the crop's x axis runs along the line.
        let angle = 30f64.to_radians();
        let (s, c) = angle.sin_cos();
        let points = vec![(0.0, 0.0), (10.0 * c, 10.0 * s)];
        let m = crop_matrix_from_landmarks(&points, (0, 1), 0.0, &[0, 1], [16.0, 16.0], [1.0, 1.0]);
        let along = (f64::from(m[0]), f64::from(m[4]));
        let norm = along.0.hypot(along.1);
        assert!((along.0 / norm - c).abs() < 1e-5 && (along.1 / norm - s).abs() < 1e-5);
    }

    #[test]
    fn feature_map_crop_is_zero_outside_and_exact_on_pixels() {
        let x = Tensor::arange(16, (Kind::Float, Device::Cpu)).view([1, 1, 4, 4]);
        // Identity up to the pixel-centre correction: m maps output pixel centres onto
        // input pixel centres shifted by one column.
        let m = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0];
        let y = crop_feature_map(&x, &m, [4, 4]).unwrap();
        let values = Vec::<f32>::try_from(y.flatten(0, -1)).unwrap();
        assert_eq!(&values[..4], &[1.0, 2.0, 3.0, 0.0]);
        assert_eq!(&values[4..8], &[5.0, 6.0, 7.0, 0.0]);
    }

    #[test]
    fn damaged_graphs_are_refused_with_the_reason() {
        let err = Graph::load(b"not safetensors", "test").unwrap_err();
        assert!(err.to_string().contains("network test is damaged"), "{err}");
        let one = 1.0f32.to_le_bytes();
        let weight =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &one).unwrap();
        let bytes = safetensors::tensor::serialize(
            vec![("w".to_owned(), weight)],
            &Some(HashMap::from([(
                "graph".to_owned(),
                r#"{"format":1,"inputs":[{"id":0,"shape":[1,2,2,1]}],"outputs":[{"name":"y","id":2}],"ops":[{"op":"relu","input":1,"out":2}]}"#.to_owned(),
            )])),
        )
        .unwrap();
        let err = Graph::load(&bytes, "test").unwrap_err();
        assert!(err.to_string().contains("reads tensor 1 before"), "{err}");
    }
}
