//! The autoencoder detector: trained with Burn, scored with the plain-Rust [`DenseNet`].

use std::cell::RefCell;
use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::{Device, Tensor, TensorData};
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use crate::dense::{DenseLayer, DenseNet};
use crate::detector::{Detector, DetectorKind, TrainingProgress, WindowShape};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use crate::scoring::ErrorProfile;

/// Hyper-parameters of the autoencoder. The defaults are the ones every reported result uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoencoderConfig {
    /// Widths of the encoder's hidden layers, input side first; the decoder mirrors them.
    pub hidden: Vec<usize>,
    /// Width of the bottleneck.
    pub latent: usize,
    /// Most passes over the training windows.
    pub max_epochs: usize,
    /// Windows per Adam step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Epochs without a better validation loss before training stops early.
    pub patience: usize,
    /// Seed of weight initialisation and shuffling: the same seed and data give the same model.
    pub seed: u64,
}

impl Default for AutoencoderConfig {
    fn default() -> Self {
        Self {
            hidden: vec![32, 16],
            latent: 8,
            max_epochs: 30,
            batch_size: 128,
            learning_rate: 2e-3,
            patience: 4,
            seed: 7,
        }
    }
}

impl AutoencoderConfig {
    /// Layer widths from input to output for an input of `width`.
    pub fn layer_sizes(&self, width: usize) -> Vec<usize> {
        let mut sizes = vec![width];
        sizes.extend(&self.hidden);
        sizes.push(self.latent);
        sizes.extend(self.hidden.iter().rev());
        sizes.push(width);
        sizes
    }
}

/// The Burn module: dense layers with ReLU between them and a linear output.
#[derive(Module, Debug)]
pub struct AutoencoderNet {
    layers: Vec<Linear>,
}

impl AutoencoderNet {
    /// A freshly initialised network with the given layer widths.
    pub fn new(sizes: &[usize], device: &Device) -> Self {
        let layers = sizes
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        Self { layers }
    }

    /// Reconstructs a batch `[n, width]`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().fold(input, |x, (i, layer)| {
            let y = layer.forward(x);
            if i == last { y } else { relu(y) }
        })
    }

    /// The same network as plain-Rust dense layers, for scoring.
    pub fn to_dense(&self) -> Result<DenseNet> {
        let last = self.layers.len() - 1;
        let mut dense = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let [inputs, outputs] = layer.weight.val().dims();
            let weights = tensor_values(layer.weight.val().into_data())?;
            let bias = match &layer.bias {
                Some(b) => tensor_values(b.val().into_data())?,
                None => vec![0.0; outputs],
            };
            dense.push(
                DenseLayer::from_input_major(inputs, outputs, &weights, &bias, i != last)
                    .ok_or_else(|| Error::Training(format!("layer {i} has inconsistent shapes")))?,
            );
        }
        DenseNet::new(dense).ok_or_else(|| Error::Training("layers do not chain".into()))
    }

    /// A Burn network holding the weights of `dense`, on `device`.
    pub fn from_dense(dense: &DenseNet, device: &Device) -> Self {
        let layers = dense
            .layers()
            .iter()
            .map(|l| {
                let weight = TensorData::new(l.input_major_weights(), [l.inputs(), l.outputs()]);
                let bias = TensorData::new(l.bias().to_vec(), [l.outputs()]);
                Linear {
                    weight: Param::from_tensor(Tensor::from_data(weight, device)),
                    bias: Some(Param::from_tensor(Tensor::from_data(bias, device))),
                }
            })
            .collect();
        Self { layers }
    }
}

fn tensor_values(data: TensorData) -> Result<Vec<f32>> {
    data.try_to_vec::<f32>()
        .map_err(|e| Error::Training(format!("cannot read weights: {e:?}")))
}

/// The device training runs on: Burn's flex backend, or its ndarray backend with the `ndarray`
/// feature.
fn training_device() -> Device {
    #[cfg(feature = "ndarray")]
    let device = Device::ndarray();
    #[cfg(not(feature = "ndarray"))]
    let device = Device::flex();
    device
}

/// A trained autoencoder: its layer widths, the dense network used for scoring and its error profile.
#[derive(Debug, Clone)]
pub struct AutoencoderDetector {
    shape: WindowShape,
    net: DenseNet,
    profile: ErrorProfile,
}

/// File name of the Burn weights inside an artifact directory.
pub const WEIGHTS_FILE: &str = "autoencoder.bpk";

/// What an artifact stores of an autoencoder besides the Burn weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AutoencoderMeta {
    shape: WindowShape,
    layer_sizes: Vec<usize>,
    profile: ErrorProfile,
}

const META_FILE: &str = "autoencoder.json";

impl AutoencoderDetector {
    /// The dense network scoring runs on.
    pub fn net(&self) -> &DenseNet {
        &self.net
    }

    /// Mean squared reconstruction error of `windows` under `net`.
    fn mean_squared_error(net: &DenseNet, windows: &[f32]) -> f64 {
        let width = net.inputs();
        let mut out = vec![0.0; width];
        let mut scratch = net.scratch();
        let mut total = 0.0f64;
        for w in windows.chunks_exact(width) {
            net.forward(w, &mut out, &mut scratch);
            total += w
                .iter()
                .zip(&out)
                .map(|(a, b)| f64::from((a - b) * (a - b)))
                .sum::<f64>();
        }
        total / windows.len().max(1) as f64
    }
}

impl Detector for AutoencoderDetector {
    type Config = AutoencoderConfig;

    fn kind(&self) -> DetectorKind {
        DetectorKind::Autoencoder
    }

    fn shape(&self) -> WindowShape {
        self.shape
    }

    fn profile(&self) -> &ErrorProfile {
        &self.profile
    }

    fn profile_mut(&mut self) -> &mut ErrorProfile {
        &mut self.profile
    }

    fn fit(
        shape: WindowShape,
        train: &[f32],
        validation: &[f32],
        config: &AutoencoderConfig,
        recency_decay: f32,
        progress: &mut dyn FnMut(&TrainingProgress),
    ) -> Result<Self> {
        let width = shape.width();
        let n = train.len() / width.max(1);
        if width == 0
            || !train.len().is_multiple_of(width)
            || !validation.len().is_multiple_of(width)
            || n == 0
            || validation.is_empty()
        {
            return Err(Error::InvalidInput(format!(
                "autoencoder needs whole windows of width {width}: got {} training and {} validation values",
                train.len(),
                validation.len()
            )));
        }
        if config.batch_size == 0 || config.latent == 0 || config.hidden.contains(&0) {
            return Err(Error::InvalidInput(
                "batch size and layer widths must be positive".into(),
            ));
        }
        let device = training_device().autodiff();
        device.seed(config.seed);
        let mut model = AutoencoderNet::new(&config.layer_sizes(width), &device);
        let mut optimizer = AdamConfig::new().init();
        let mut rng = SplitMix64::new(config.seed);
        let mut order: Vec<usize> = (0..n).collect();
        let mut batch = Vec::with_capacity(config.batch_size * width);

        let mut best = (f64::INFINITY, model.to_dense()?);
        let mut stale = 0;
        for epoch in 1..=config.max_epochs {
            rng.shuffle(&mut order);
            let mut epoch_loss = 0.0;
            for chunk in order.chunks(config.batch_size) {
                batch.clear();
                for &i in chunk {
                    batch.extend_from_slice(&train[i * width..(i + 1) * width]);
                }
                let x = Tensor::<2>::from_data(
                    TensorData::new(batch.clone(), [chunk.len(), width]),
                    &device,
                );
                let loss = (model.forward(x.clone()) - x).square().mean();
                epoch_loss += f64::from(loss.clone().into_scalar::<f32>()) * chunk.len() as f64;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optimizer.step(config.learning_rate, model, grads);
            }
            let dense = model.to_dense()?;
            let validation_loss = Self::mean_squared_error(&dense, validation) / width as f64;
            progress(&TrainingProgress {
                epoch,
                max_epochs: config.max_epochs,
                train_loss: epoch_loss / (n * width) as f64,
                validation_loss,
            });
            if !validation_loss.is_finite() {
                return Err(Error::Training(format!(
                    "validation loss became {validation_loss} in epoch {epoch}"
                )));
            }
            if validation_loss < best.0 {
                best = (validation_loss, dense);
                stale = 0;
            } else {
                stale += 1;
                if stale >= config.patience {
                    break;
                }
            }
        }
        let net = best.1;
        let mut reconstructions = vec![0.0; validation.len()];
        reconstruct_with(&net, validation, &mut reconstructions);
        let profile = ErrorProfile::fit(
            shape.window,
            shape.dims,
            recency_decay,
            validation,
            &reconstructions,
        )?;
        Ok(Self {
            shape,
            net,
            profile,
        })
    }

    fn reconstruct(&self, windows: &[f32], out: &mut [f32]) -> Result<()> {
        self.shape.check_batch(windows, out)?;
        reconstruct_with(&self.net, windows, out);
        Ok(())
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(WEIGHTS_FILE);
        AutoencoderNet::from_dense(&self.net, &training_device())
            .save_file(&path)
            .map_err(|e| Error::Artifact {
                path: path.clone(),
                message: format!("cannot save weights: {e}"),
            })?;
        let sizes = std::iter::once(self.net.inputs())
            .chain(self.net.layers().iter().map(|l| l.outputs()))
            .collect();
        let meta = AutoencoderMeta {
            shape: self.shape,
            layer_sizes: sizes,
            profile: self.profile.clone(),
        };
        crate::artifact::write_json(&dir.join(META_FILE), &meta)
    }

    fn load(dir: &Path) -> Result<Self> {
        let meta: AutoencoderMeta = crate::artifact::read_json(&dir.join(META_FILE))?;
        let path = dir.join(WEIGHTS_FILE);
        let bad = |message: String| Error::Artifact {
            path: path.clone(),
            message,
        };
        if meta.layer_sizes.len() < 2
            || meta.layer_sizes[0] != meta.shape.width()
            || meta.layer_sizes.last() != Some(&meta.shape.width())
            || meta.profile.window() != meta.shape.window
            || meta.profile.dims() != meta.shape.dims
        {
            return Err(bad(format!(
                "layer sizes {:?} do not fit windows of {:?}",
                meta.layer_sizes, meta.shape
            )));
        }
        if !path.is_file() {
            return Err(bad("weights file is missing".into()));
        }
        let device = training_device();
        // Burn validates every tensor's shape against the module it loads into.
        let net = AutoencoderNet::new(&meta.layer_sizes, &device)
            .try_load_file(&path)
            .map_err(|e| bad(format!("cannot load weights: {e}")))?;
        Ok(Self {
            shape: meta.shape,
            net: net.to_dense()?,
            profile: meta.profile,
        })
    }
}

thread_local! {
    /// Activations of the window a thread is reconstructing, kept between calls so that live
    /// scoring (one window at a time) allocates nothing. Two layers' worth: a few hundred floats.
    static SCRATCH: RefCell<[Vec<f32>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

fn reconstruct_with(net: &DenseNet, windows: &[f32], out: &mut [f32]) {
    let width = net.inputs();
    SCRATCH.with_borrow_mut(|scratch| {
        net.fit_scratch(scratch);
        for (w, o) in windows.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
            net.forward(w, o, scratch);
        }
    });
}
