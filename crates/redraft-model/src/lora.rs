//! LoRA: low-rank adapters beside the frozen linear projections, read and written in PEFT's
//! format.
//!
//! A projection `W` with an adapter computes `y = x·Wᵀ + scaling · (x·Aᵀ)·Bᵀ` with `A`
//! (`lora_A.weight`, `[r, in]`) and `B` (`lora_B.weight`, `[out, r]`) as PEFT stores them and
//! `scaling = alpha / r` (or `alpha / √r` with rsLoRA). The dense `W + scaling·B·A` is never
//! formed per forward: only [`CausalLm::merge_lora`] builds it, once. The base weights of a model
//! with adapters are frozen (no gradient, so no optimiser state); [`CausalLm::set_lora_enabled`]
//! switches the adapters off so the same model computes the base alone (the KL reference).
//!
//! An adapter folder is what `PeftModel.save_pretrained` writes: `adapter_config.json` (`r`,
//! `lora_alpha`, `lora_dropout`, `target_modules`, `use_rslora`) and `adapter_model.safetensors`
//! with tensors named `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::module::linear;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Uniform};
use safetensors::SafeTensors;
use serde_json::{Value, json};

use crate::config::ModelConfig;
use crate::dtype::widen;
use crate::error::{Error, Result};
use crate::transformer::{CausalLm, DecoderLayer, host};
use crate::weights::{NamedTensor, SaveDType, fnv1a, safetensors_bytes, to_f32, write_atomic};

/// The projections an adapter can target, under PEFT's (and transformers') names.
pub const TARGET_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The file of an adapter's settings in an adapter folder.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The file of an adapter's tensors in an adapter folder.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// The settings of LoRA adapters: the `[lora]` table of a run (these key names) and PEFT's
/// `adapter_config.json` (`r`, `lora_alpha`, `lora_dropout`, `target_modules`, `use_rslora`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// The rank `r` of each adapter.
    pub rank: usize,
    /// `alpha`: the adapter's output is scaled by `alpha / rank` (`alpha / √rank` with rsLoRA).
    pub alpha: f64,
    /// Dropout on the adapter's input while training.
    #[serde(default)]
    pub dropout: f64,
    /// The projections that get an adapter in every layer ([`TARGET_MODULES`]).
    pub target_modules: Vec<String>,
    /// rsLoRA: scale by `alpha / √rank` instead of `alpha / rank`.
    #[serde(default)]
    pub use_rslora: bool,
}

/// Where a [`LoraConfig`] was read from, which decides the key names its errors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraKeys {
    /// A run's `[lora]` table: `rank`, `alpha`, `dropout`, `target_modules`.
    Run,
    /// PEFT's `adapter_config.json`: `r`, `lora_alpha`, `lora_dropout`, `target_modules`.
    Peft,
}

impl LoraKeys {
    fn name(self, field: &'static str) -> &'static str {
        match (self, field) {
            (Self::Peft, "rank") => "r",
            (Self::Peft, "alpha") => "lora_alpha",
            (Self::Peft, "dropout") => "lora_dropout",
            (_, other) => other,
        }
    }
}

/// `[in, out]` of projection `module` (one of [`TARGET_MODULES`]) in `config`'s layers.
pub fn module_dims(config: &ModelConfig, module: &str) -> Option<[usize; 2]> {
    let (d, f) = (config.hidden_size, config.intermediate_size);
    let q = config.num_heads * config.head_dim;
    let kv = config.num_kv_heads * config.head_dim;
    Some(match module {
        "q_proj" => [d, q],
        "k_proj" | "v_proj" => [d, kv],
        "o_proj" => [q, d],
        "gate_proj" | "up_proj" => [d, f],
        "down_proj" => [f, d],
        _ => return None,
    })
}

/// The block (`self_attn` or `mlp`) holding projection `module`.
fn block_of(module: &str) -> &'static str {
    match module {
        "q_proj" | "k_proj" | "v_proj" | "o_proj" => "self_attn",
        _ => "mlp",
    }
}

/// PEFT's name of factor `factor` (`lora_A` or `lora_B`) of `module` in layer `layer`.
fn peft_name(layer: usize, module: &str, factor: &str) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{module}.{factor}.weight",
        block_of(module)
    )
}

impl LoraConfig {
    /// The factor the adapters' output is scaled by.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// The number of adapter parameters these settings put on `model` (targets it lacks count
    /// nothing; [`validate`](Self::validate) refuses them).
    pub fn parameter_count(&self, model: &ModelConfig) -> u128 {
        let per_layer: u128 = self
            .target_modules
            .iter()
            .filter_map(|m| module_dims(model, m))
            .map(|[d_in, d_out]| (self.rank as u128) * (d_in + d_out) as u128)
            .sum();
        per_layer * model.num_layers as u128
    }

    /// Checks the settings against `model`: a rank of at least 1 and no larger than any targeted
    /// projection's smaller side, a finite positive alpha, a dropout in `[0, 1)`, and target
    /// modules the model has, each once. Errors name the key as `keys` spells it and `origin`.
    pub fn validate(&self, model: &ModelConfig, keys: LoraKeys, origin: &str) -> Result<()> {
        let bad = |field: &'static str, reason: String| Error::Lora {
            origin: origin.into(),
            key: keys.name(field).into(),
            reason,
        };
        if self.rank == 0 {
            return Err(bad("rank", "must be at least 1".into()));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(bad(
                "alpha",
                format!("{} must be a positive number", self.alpha),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(bad(
                "dropout",
                format!("{} must be at least 0 and below 1", self.dropout),
            ));
        }
        if self.target_modules.is_empty() {
            return Err(bad(
                "target_modules",
                format!("is empty; name some of {}", TARGET_MODULES.join(", ")),
            ));
        }
        let mut seen = BTreeSet::new();
        for module in &self.target_modules {
            let Some([d_in, d_out]) = module_dims(model, module) else {
                return Err(bad(
                    "target_modules",
                    format!(
                        "the model has no module `{module}` (it has {})",
                        TARGET_MODULES.join(", ")
                    ),
                ));
            };
            if !seen.insert(module.as_str()) {
                return Err(bad("target_modules", format!("`{module}` is listed twice")));
            }
            if self.rank > d_in.min(d_out) {
                return Err(bad(
                    "rank",
                    format!(
                        "{} is larger than {module} ([{d_out}, {d_in}]) allows: at most {}",
                        self.rank,
                        d_in.min(d_out)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The settings as PEFT's `adapter_config.json` spells them.
    pub fn to_peft_json(&self) -> Value {
        json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": self.rank,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": self.target_modules,
            "use_rslora": self.use_rslora,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "layers_pattern": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "use_dora": false,
            "lora_bias": false,
            "base_model_name_or_path": null,
        })
    }

    /// Reads PEFT's `adapter_config.json` settings, refusing (by key) the PEFT options this
    /// crate does not implement.
    pub fn from_peft_json(value: &Value, path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let bad = |key: &str, reason: String| Error::Lora {
            origin: origin.clone(),
            key: key.into(),
            reason,
        };
        let field = |key: &str| value.get(key).filter(|v| !v.is_null());
        if let Some(kind) = field("peft_type")
            && kind != "LORA"
        {
            return Err(bad("peft_type", format!("{kind} is not a LoRA adapter")));
        }
        // Options that change what an adapter computes: only their neutral values are read.
        let neutral = [
            ("use_dora", json!(false)),
            ("use_qalora", json!(false)),
            ("bias", json!("none")),
            ("fan_in_fan_out", json!(false)),
            ("lora_bias", json!(false)),
            ("rank_pattern", json!({})),
            ("alpha_pattern", json!({})),
            ("layers_to_transform", Value::Null),
            ("modules_to_save", Value::Null),
            ("layer_replication", Value::Null),
            ("exclude_modules", Value::Null),
            ("target_parameters", Value::Null),
            ("trainable_token_indices", Value::Null),
            ("alora_invocation_tokens", Value::Null),
        ];
        for (key, expected) in neutral {
            let found = value.get(key).cloned().unwrap_or(Value::Null);
            let empty = found.is_null()
                || found.as_array().is_some_and(Vec::is_empty)
                || found.as_object().is_some_and(serde_json::Map::is_empty);
            if !empty && found != expected {
                return Err(bad(
                    key,
                    format!("{found} is not supported (only {expected} is)"),
                ));
            }
        }
        let rank = field("r")
            .ok_or_else(|| bad("r", "is missing".into()))?
            .as_u64()
            .ok_or_else(|| bad("r", "must be a whole number".into()))? as usize;
        let alpha = match field("lora_alpha") {
            None => 8.0, // PEFT's default
            Some(v) => v
                .as_f64()
                .ok_or_else(|| bad("lora_alpha", "must be a number".into()))?,
        };
        let dropout = match field("lora_dropout") {
            None => 0.0,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| bad("lora_dropout", "must be a number".into()))?,
        };
        let use_rslora = match field("use_rslora") {
            None => false,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| bad("use_rslora", "must be true or false".into()))?,
        };
        let target_modules = match field("target_modules") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|m| {
                    m.as_str()
                        .map(String::from)
                        .ok_or_else(|| bad("target_modules", format!("{m} is not a module name")))
                })
                .collect::<Result<Vec<_>>>()?,
            Some(other) => {
                return Err(bad(
                    "target_modules",
                    format!("{other} is not supported: give a list of module names"),
                ));
            }
            None => return Err(bad("target_modules", "is missing".into())),
        };
        Ok(Self {
            rank,
            alpha,
            dropout,
            target_modules,
            use_rslora,
        })
    }
}

/// The two factors of one adapter and its switch.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// `lora_A.weight`, `[r, in]`.
    pub a: Param<Tensor<2>>,
    /// `lora_B.weight`, `[out, r]`.
    pub b: Param<Tensor<2>>,
    /// Dropout on the adapter's input (active only while training).
    pub dropout: Dropout,
    #[module(skip)]
    scaling: f64,
    #[module(skip)]
    enabled: bool,
}

impl LoraAdapter {
    /// `scaling · (dropout(x)·Aᵀ)·Bᵀ`.
    ///
    /// # Shapes
    /// - `x`: `[..., in]` -> `[..., out]`
    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let down = linear(self.dropout.forward(x), self.a.val().transpose(), None);
        linear(
            down.mul_scalar(self.scaling),
            self.b.val().transpose(),
            None,
        )
    }
}

/// A linear projection with an optional LoRA adapter beside its base weight.
#[derive(Module, Debug)]
pub struct LoraLinear {
    /// The base projection (burn's `[in, out]` weight).
    pub base: Linear,
    /// The adapter, when the projection is targeted.
    pub lora: Option<LoraAdapter>,
}

impl LoraLinear {
    /// A projection without adapter.
    pub fn new(base: Linear) -> Self {
        Self { base, lora: None }
    }

    /// `base(x)`, plus the adapter's term when it is present and enabled.
    ///
    /// # Shapes
    /// - `x`: `[..., in]` -> `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match &self.lora {
            Some(adapter) if adapter.enabled => self.base_forward(x.clone()) + adapter.forward(x),
            _ => self.base_forward(x),
        }
    }

    /// `base(x)`, widening a base weight stored in bf16 or f16 to f32 first.
    fn base_forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let w = self.base.weight.val();
        if w.dtype() == DType::F32 {
            self.base.forward(x)
        } else {
            linear(x, widen(w), self.base.bias.as_ref().map(Param::val))
        }
    }

    /// The projection with `W + scaling·B·A` as its weight and no adapter.
    fn merged(self) -> Self {
        let Some(adapter) = self.lora else {
            return self;
        };
        // burn's weight is `[in, out]`: add `scaling · Aᵀ·Bᵀ`.
        let delta = adapter
            .a
            .val()
            .transpose()
            .matmul(adapter.b.val().transpose())
            .mul_scalar(adapter.scaling);
        let weight = Param::from_tensor(widen(self.base.weight.val()) + delta);
        Self {
            base: Linear {
                weight,
                bias: self.base.bias,
            },
            lora: None,
        }
    }
}

impl DecoderLayer {
    /// Projection `module` (one of [`TARGET_MODULES`]).
    fn projection(&self, module: &str) -> Option<&LoraLinear> {
        Some(match module {
            "q_proj" => &self.self_attn.q_proj,
            "k_proj" => &self.self_attn.k_proj,
            "v_proj" => &self.self_attn.v_proj,
            "o_proj" => &self.self_attn.o_proj,
            "gate_proj" => &self.mlp.gate_proj,
            "up_proj" => &self.mlp.up_proj,
            "down_proj" => &self.mlp.down_proj,
            _ => return None,
        })
    }

    fn projection_mut(&mut self, module: &str) -> Option<&mut LoraLinear> {
        Some(match module {
            "q_proj" => &mut self.self_attn.q_proj,
            "k_proj" => &mut self.self_attn.k_proj,
            "v_proj" => &mut self.self_attn.v_proj,
            "o_proj" => &mut self.self_attn.o_proj,
            "gate_proj" => &mut self.mlp.gate_proj,
            "up_proj" => &mut self.mlp.up_proj,
            "down_proj" => &mut self.mlp.down_proj,
            _ => return None,
        })
    }
}

/// A PEFT adapter folder read into memory, not yet checked against a model.
#[derive(Debug)]
pub struct PeftAdapter {
    /// The adapter's settings.
    pub config: LoraConfig,
    dir: PathBuf,
    /// PEFT name -> (shape, values).
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl PeftAdapter {
    /// Reads `adapter_config.json` and `adapter_model.safetensors` of folder `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let config_path = dir.join(ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&config_path).map_err(|source| Error::Io {
            path: config_path.clone(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: config_path.clone(),
            source,
        })?;
        let config = LoraConfig::from_peft_json(&value, &config_path)?;
        let weights = dir.join(ADAPTER_WEIGHTS);
        let bytes = std::fs::read(&weights).map_err(|source| Error::Io {
            path: weights.clone(),
            source,
        })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors {
            path: weights.clone(),
            message: e.to_string(),
        })?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let values = to_f32(&name, view.dtype(), view.data())?;
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(Self {
            config,
            dir: dir.into(),
            tensors,
        })
    }

    fn mismatch(&self, name: &str, reason: String) -> Error {
        Error::AdapterTensor {
            path: self.dir.join(ADAPTER_WEIGHTS),
            name: name.into(),
            reason,
        }
    }

    /// Checks the adapter against `model` without changing anything: its settings, and that
    /// every tensor the settings imply is present with the model's shape and nothing else is.
    pub fn check(&self, model: &ModelConfig) -> Result<()> {
        let origin = self.dir.join(ADAPTER_CONFIG).display().to_string();
        self.config.validate(model, LoraKeys::Peft, &origin)?;
        let mut expected = HashMap::new();
        for (name, shape) in expected_tensors(model, &self.config) {
            let Some((found, _)) = self.tensors.get(&name) else {
                return Err(self.mismatch(&name, "is missing".into()));
            };
            if found != &shape {
                return Err(self.mismatch(
                    &name,
                    format!("has shape {found:?}; this model needs {shape:?}"),
                ));
            }
            expected.insert(name, shape);
        }
        let mut extra: Vec<&String> = self
            .tensors
            .keys()
            .filter(|n| !expected.contains_key(*n))
            .collect();
        extra.sort();
        if let Some(name) = extra.first() {
            return Err(self.mismatch(name, "matches no targeted projection of this model".into()));
        }
        Ok(())
    }
}

/// Every adapter tensor `config` implies for `model`, with PEFT's names and shapes.
fn expected_tensors(model: &ModelConfig, config: &LoraConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for layer in 0..model.num_layers {
        for module in &config.target_modules {
            if let Some([d_in, d_out]) = module_dims(model, module) {
                out.push((peft_name(layer, module, "lora_A"), vec![config.rank, d_in]));
                out.push((peft_name(layer, module, "lora_B"), vec![d_out, config.rank]));
            }
        }
    }
    out
}

impl CausalLm {
    /// The model with the adapter of PEFT folder `dir`, checked first ([`PeftAdapter::check`]):
    /// a mismatch is refused, naming the key or tensor, before the model is changed.
    pub fn with_adapter(self, dir: &Path, device: &Device) -> Result<Self> {
        let mut adapter = PeftAdapter::open(dir)?;
        adapter.check(self.config())?;
        let config = adapter.config.clone();
        self.attach(config, device, |name, _, _| {
            adapter
                .tensors
                .remove(name)
                .map(|(_, v)| v)
                .unwrap_or_default()
        })
    }

    /// The model with fresh adapters as `config` asks (checked first, with `origin` and the run's
    /// key names in errors): A drawn like PEFT's default (uniform in ±1/√in), deterministic in
    /// `seed`, and B zero, so the model starts out computing the base.
    pub fn with_new_lora(
        self,
        config: &LoraConfig,
        origin: &str,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate(self.config(), LoraKeys::Run, origin)?;
        self.attach(config.clone(), device, |name, [rows, cols], is_a| {
            if !is_a {
                return vec![0.0; rows * cols];
            }
            let bound = 1.0 / (cols as f32).sqrt();
            let uniform = Uniform::new(-bound, bound).expect("a positive bound");
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(name));
            (0..rows * cols).map(|_| uniform.sample(&mut rng)).collect()
        })
    }

    /// Puts an adapter on every targeted projection (`values` gives each factor by PEFT name,
    /// shape and whether it is A) and freezes everything but the adapters.
    fn attach(
        self,
        config: LoraConfig,
        device: &Device,
        mut values: impl FnMut(&str, [usize; 2], bool) -> Vec<f32>,
    ) -> Result<Self> {
        let mut model = self.no_grad();
        let scaling = config.scaling();
        let rank = config.rank;
        let model_config = model.config().clone();
        for (i, layer) in model.layers.iter_mut().enumerate() {
            for module in &config.target_modules {
                let Some([d_in, d_out]) = module_dims(&model_config, module) else {
                    continue;
                };
                let mut factor = |factor: &str, shape: [usize; 2]| {
                    let data = values(&peft_name(i, module, factor), shape, factor == "lora_A");
                    Param::from_tensor(Tensor::<2>::from_data(TensorData::new(data, shape), device))
                        .set_require_grad(true)
                };
                let adapter = LoraAdapter {
                    a: factor("lora_A", [rank, d_in]),
                    b: factor("lora_B", [d_out, rank]),
                    dropout: DropoutConfig::new(config.dropout).init(),
                    scaling,
                    enabled: true,
                };
                if let Some(proj) = layer.projection_mut(module) {
                    proj.lora = Some(adapter);
                }
            }
        }
        model.lora = Some(config);
        Ok(model)
    }

    /// The model without its adapters (the base alone).
    pub fn without_lora(mut self) -> Self {
        for layer in &mut self.layers {
            for module in TARGET_MODULES {
                if let Some(proj) = layer.projection_mut(module) {
                    proj.lora = None;
                }
            }
        }
        self.lora = None;
        self
    }

    /// The LoRA settings of the model's adapters, if it has any.
    pub fn lora(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// Switches every adapter on or off; off, the model computes its base alone.
    pub fn set_lora_enabled(&mut self, enabled: bool) {
        for layer in &mut self.layers {
            for module in TARGET_MODULES {
                if let Some(adapter) = layer.projection_mut(module).and_then(|p| p.lora.as_mut()) {
                    adapter.enabled = enabled;
                }
            }
        }
    }

    /// The model with each adapter folded into its base weight (`W + scaling·B·A`) and no
    /// adapters: what `--merge` saves and what sampling may run.
    pub fn merge_lora(mut self) -> Self {
        self.layers = std::mem::take(&mut self.layers)
            .into_iter()
            .map(|mut l| {
                l.self_attn.q_proj = l.self_attn.q_proj.merged();
                l.self_attn.k_proj = l.self_attn.k_proj.merged();
                l.self_attn.v_proj = l.self_attn.v_proj.merged();
                l.self_attn.o_proj = l.self_attn.o_proj.merged();
                l.mlp.gate_proj = l.mlp.gate_proj.merged();
                l.mlp.up_proj = l.mlp.up_proj.merged();
                l.mlp.down_proj = l.mlp.down_proj.merged();
                l
            })
            .collect();
        self.lora = None;
        self
    }

    /// The adapters' tensors under PEFT's names and layouts (empty without adapters).
    pub fn export_lora(&self) -> Vec<NamedTensor> {
        let Some(config) = &self.lora else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for module in &config.target_modules {
                let Some(adapter) = layer.projection(module).and_then(|p| p.lora.as_ref()) else {
                    continue;
                };
                for (factor, param) in [("lora_A", &adapter.a), ("lora_B", &adapter.b)] {
                    let t = param.val();
                    let [rows, cols] = t.dims();
                    out.push(NamedTensor {
                        name: peft_name(i, module, factor),
                        shape: vec![rows, cols],
                        values: host(t.reshape([rows * cols])),
                    });
                }
            }
        }
        out
    }

    /// Writes the adapters as a PEFT folder (`adapter_config.json`, `adapter_model.safetensors`)
    /// into `dir` (created if needed), each file atomically.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the model has no adapters; [`Error::Io`] naming the file.
    pub fn save_adapter(&self, dir: &Path) -> Result<()> {
        let Some(config) = &self.lora else {
            return Err(Error::InvalidInput("the model has no LoRA adapters".into()));
        };
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.into(),
            source,
        })?;
        let weights = safetensors_bytes(&self.export_lora(), SaveDType::F32)?;
        write_atomic(&dir.join(ADAPTER_WEIGHTS), &weights)?;
        let text =
            serde_json::to_string_pretty(&config.to_peft_json()).map_err(|source| Error::Json {
                path: dir.join(ADAPTER_CONFIG),
                source,
            })?;
        write_atomic(&dir.join(ADAPTER_CONFIG), text.as_bytes())
    }
}
