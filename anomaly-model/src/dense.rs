//! A plain-Rust forward pass of a fully connected network: the scoring hot path.
//!
//! Burn trains the autoencoder; scoring runs here because a framework call costs several
//! microseconds of dispatch, while the whole network of a small autoencoder costs less than one.

use serde::{Deserialize, Serialize};

/// One fully connected layer, `y = act(W x + b)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseLayer {
    inputs: usize,
    outputs: usize,
    /// Row-major `[outputs][inputs]`: each output is one contiguous dot product.
    weights: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
}

impl DenseLayer {
    /// A layer from weights laid out `[inputs][outputs]` (Burn's `Linear` layout), transposed here.
    pub fn from_input_major(
        inputs: usize,
        outputs: usize,
        weights: &[f32],
        bias: &[f32],
        relu: bool,
    ) -> Option<Self> {
        if weights.len() != inputs * outputs || bias.len() != outputs {
            return None;
        }
        let mut transposed = vec![0.0; inputs * outputs];
        for i in 0..inputs {
            for o in 0..outputs {
                transposed[o * inputs + i] = weights[i * outputs + o];
            }
        }
        Some(Self {
            inputs,
            outputs,
            weights: transposed,
            bias: bias.to_vec(),
            relu,
        })
    }

    /// Width of the input.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Width of the output.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Weights laid out `[inputs][outputs]`, as Burn's `Linear` stores them.
    pub fn input_major_weights(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.inputs * self.outputs];
        for o in 0..self.outputs {
            for i in 0..self.inputs {
                out[i * self.outputs + o] = self.weights[o * self.inputs + i];
            }
        }
        out
    }

    /// The bias, one value per output.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    fn forward(&self, x: &[f32], y: &mut [f32]) {
        for ((out, row), b) in y
            .iter_mut()
            .zip(self.weights.chunks_exact(self.inputs))
            .zip(&self.bias)
        {
            let v = dot(row, x) + b;
            *out = if self.relu { v.max(0.0) } else { v };
        }
    }
}

/// A dot product written as eight independent accumulators so that it vectorises.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, ar) = a.split_at(a.len() - a.len() % 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in ar.iter().zip(br) {
        sum += x * y;
    }
    sum
}

/// A stack of dense layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseNet {
    layers: Vec<DenseLayer>,
}

impl DenseNet {
    /// A network of `layers`; `None` when consecutive widths disagree or there is no layer.
    pub fn new(layers: Vec<DenseLayer>) -> Option<Self> {
        let chained = layers.windows(2).all(|p| p[0].outputs == p[1].inputs);
        (chained && !layers.is_empty()).then_some(Self { layers })
    }

    /// The layers, input first.
    pub fn layers(&self) -> &[DenseLayer] {
        &self.layers
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.layers[0].inputs
    }

    /// Output width.
    pub fn outputs(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs
    }

    /// Scratch space large enough for any hidden activation of this network.
    pub fn scratch(&self) -> [Vec<f32>; 2] {
        let mut scratch = [Vec::new(), Vec::new()];
        self.fit_scratch(&mut scratch);
        scratch
    }

    /// Grows `scratch` (kept from an earlier use) to fit this network's activations; allocates
    /// only when it is too small.
    pub fn fit_scratch(&self, scratch: &mut [Vec<f32>; 2]) {
        let widest = self
            .layers
            .iter()
            .map(|l| l.outputs.max(l.inputs))
            .max()
            .unwrap_or(0);
        for buffer in scratch {
            if buffer.len() < widest {
                buffer.resize(widest, 0.0);
            }
        }
    }

    /// Runs one input through the network into `out` (length [`Self::outputs`]).
    pub fn forward(&self, input: &[f32], out: &mut [f32], scratch: &mut [Vec<f32>; 2]) {
        let [a, b] = scratch;
        // Each hidden layer reads the previous activation from `src` and writes into `dst`.
        let (mut src, mut dst) = (a, b);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let x: &[f32] = if i == 0 { input } else { &src[..layer.inputs] };
            if i == last {
                layer.forward(x, out);
            } else {
                layer.forward(x, &mut dst[..layer.outputs]);
                std::mem::swap(&mut src, &mut dst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_matches_a_hand_computed_two_layer_network() {
        // Input-major weights: 2 inputs -> 2 outputs.
        let l1 =
            DenseLayer::from_input_major(2, 2, &[1.0, -1.0, 2.0, 1.0], &[0.5, 0.0], true).unwrap();
        let l2 = DenseLayer::from_input_major(2, 1, &[1.0, 3.0], &[-1.0], false).unwrap();
        let net = DenseNet::new(vec![l1, l2]).unwrap();
        let mut out = [0.0];
        let mut scratch = net.scratch();
        // h = relu([1*1 + 2*2 + 0.5, -1*1 + 1*2 + 0]) = [5.5, 1]; y = 5.5 + 3 - 1 = 7.5
        net.forward(&[1.0, 2.0], &mut out, &mut scratch);
        assert_eq!(out, [7.5]);
        // relu clips the negative hidden unit: h = [3 + 0.5, relu(-3)] = [3.5, 0]; y = 3.5 - 1 = 2.5
        net.forward(&[3.0, 0.0], &mut out, &mut scratch);
        assert_eq!(out, [2.5]);
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        assert!(DenseLayer::from_input_major(2, 2, &[1.0; 3], &[0.0; 2], true).is_none());
        let l1 = DenseLayer::from_input_major(2, 3, &[0.0; 6], &[0.0; 3], true).unwrap();
        let l2 = DenseLayer::from_input_major(2, 1, &[0.0; 2], &[0.0], false).unwrap();
        assert!(DenseNet::new(vec![l1, l2]).is_none());
        assert!(DenseNet::new(vec![]).is_none());
    }

    #[test]
    fn dot_handles_lengths_that_are_not_multiples_of_eight() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let expected: f32 = a.iter().map(|x| x * x).sum();
        assert_eq!(dot(&a, &a), expected);
    }
}
