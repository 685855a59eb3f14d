//! A plain-Rust forward pass of a fully connected network: the scoring hot path.
//!
//! Burn trains the autoencoder; scoring runs here because a framework call costs several
//! microseconds of dispatch, while the whole network of a small autoencoder costs less than one.

/// Outputs are computed in blocks of this many lanes' multiples (one AVX vector of `f32`).
const LANES: usize = 8;

/// One fully connected layer, `y = act(W x + b)`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseLayer {
    inputs: usize,
    outputs: usize,
    /// `outputs` rounded up to [`LANES`]: the length of one input's row in `weights`.
    stride: usize,
    /// Input-major `[inputs][stride]` (Burn's `Linear` layout, each row padded with zeros): a
    /// block of outputs is accumulated in registers while every input adds its row's part, which
    /// vectorises across the outputs without a horizontal sum, and every output sums its terms in
    /// input order whatever the vector width.
    weights: Vec<f32>,
    /// The bias, padded with zeros to `stride`.
    bias: Vec<f32>,
    relu: bool,
}

impl DenseLayer {
    /// A layer from weights laid out `[inputs][outputs]` (Burn's `Linear` layout).
    pub fn from_input_major(
        inputs: usize,
        outputs: usize,
        weights: &[f32],
        bias: &[f32],
        relu: bool,
    ) -> Option<Self> {
        if weights.len() != inputs * outputs || bias.len() != outputs || outputs == 0 {
            return None;
        }
        let stride = outputs.div_ceil(LANES) * LANES;
        let mut padded = vec![0.0; inputs * stride];
        for (row, from) in padded
            .chunks_exact_mut(stride)
            .zip(weights.chunks_exact(outputs))
        {
            row[..outputs].copy_from_slice(from);
        }
        let mut padded_bias = vec![0.0; stride];
        padded_bias[..outputs].copy_from_slice(bias);
        Some(Self {
            inputs,
            outputs,
            stride,
            weights: padded,
            bias: padded_bias,
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
        self.weights
            .chunks_exact(self.stride)
            .flat_map(|row| &row[..self.outputs])
            .copied()
            .collect()
    }

    /// The bias, one value per output.
    pub fn bias(&self) -> &[f32] {
        &self.bias[..self.outputs]
    }

    #[inline(always)]
    fn forward(&self, x: &[f32], y: &mut [f32]) {
        let mut start = 0;
        while start < self.stride {
            start += match self.stride - start {
                32.. => self.block::<32>(x, start, y),
                16.. => self.block::<16>(x, start, y),
                _ => self.block::<LANES>(x, start, y),
            };
        }
    }

    /// Outputs `start..start + N` (those below `outputs`), their sums kept in registers across
    /// all inputs; returns `N`.
    #[inline(always)]
    fn block<const N: usize>(&self, x: &[f32], start: usize, y: &mut [f32]) -> usize {
        let mut acc: [f32; N] = self.bias[start..start + N].try_into().expect("N lanes");
        for (&xi, row) in x.iter().zip(self.weights.chunks_exact(self.stride)) {
            // Behind a ReLU about half the inputs are exactly zero: their row adds nothing.
            if xi == 0.0 {
                continue;
            }
            let w: &[f32; N] = row[start..start + N].try_into().expect("N lanes");
            for k in 0..N {
                acc[k] += xi * w[k];
            }
        }
        let end = (start + N).min(self.outputs);
        for (out, sum) in y[start..end].iter_mut().zip(acc) {
            *out = if self.relu { sum.max(0.0) } else { sum };
        }
        N
    }
}

/// A stack of dense layers.
#[derive(Debug, Clone, PartialEq)]
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
    ///
    /// On x86-64 CPUs with AVX2 the same code runs compiled for 8-wide vectors. Each output sums
    /// its terms in the same order at any vector width, so every CPU computes the same bits.
    pub fn forward(&self, input: &[f32], out: &mut [f32], scratch: &mut [Vec<f32>; 2]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.forward_avx2(input, out, scratch) };
        }
        self.forward_portable(input, out, scratch)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn forward_avx2(&self, input: &[f32], out: &mut [f32], scratch: &mut [Vec<f32>; 2]) {
        self.forward_portable(input, out, scratch)
    }

    #[inline(always)]
    fn forward_portable(&self, input: &[f32], out: &mut [f32], scratch: &mut [Vec<f32>; 2]) {
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
    fn every_cpu_path_computes_the_same_bits_as_a_plain_loop() {
        // Widths that are not multiples of any vector width, weights of every sign.
        let widths = [19usize, 37, 5, 13, 19];
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let layers: Vec<DenseLayer> = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let weights: Vec<f32> = (0..w[0] * w[1]).map(|_| next()).collect();
                let bias: Vec<f32> = (0..w[1]).map(|_| next()).collect();
                DenseLayer::from_input_major(w[0], w[1], &weights, &bias, i + 2 < widths.len())
                    .unwrap()
            })
            .collect();
        let net = DenseNet::new(layers).unwrap();
        // Each output: its bias, then each input's term in input order.
        let plain = |input: &[f32]| {
            net.layers().iter().fold(input.to_vec(), |x, layer| {
                let w = layer.input_major_weights();
                (0..layer.outputs())
                    .map(|o| {
                        let sum = (0..layer.inputs()).fold(layer.bias()[o], |acc, i| {
                            acc + x[i] * w[i * layer.outputs() + o]
                        });
                        if layer.relu { sum.max(0.0) } else { sum }
                    })
                    .collect()
            })
        };
        let mut scratch = net.scratch();
        for _ in 0..50 {
            let input: Vec<f32> = (0..19).map(|_| next() * 4.0).collect();
            let (mut fast, mut portable) = ([0.0f32; 19], [0.0f32; 19]);
            net.forward(&input, &mut fast, &mut scratch);
            net.forward_portable(&input, &mut portable, &mut scratch);
            assert_eq!(fast.map(f32::to_bits), portable.map(f32::to_bits));
            let expected: Vec<u32> = plain(&input).into_iter().map(f32::to_bits).collect();
            assert_eq!(fast.map(f32::to_bits).to_vec(), expected);
        }
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        assert!(DenseLayer::from_input_major(2, 2, &[1.0; 3], &[0.0; 2], true).is_none());
        let l1 = DenseLayer::from_input_major(2, 3, &[0.0; 6], &[0.0; 3], true).unwrap();
        let l2 = DenseLayer::from_input_major(2, 1, &[0.0; 2], &[0.0], false).unwrap();
        assert!(DenseNet::new(vec![l1, l2]).is_none());
        assert!(DenseNet::new(vec![]).is_none());
    }
}
