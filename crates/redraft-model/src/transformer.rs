//! The decoder: a Llama/Qwen2-family transformer, top to bottom — MLP, attention, layer, model.
//!
//! Pre-norm residual blocks with RMSNorm, rotary positions, grouped-query attention and a SwiGLU
//! MLP; Qwen2 adds q/k/v biases; the output head may share the embedding matrix. Parameters are
//! built from a [`WeightSource`] under transformers' tensor names, so a random initialisation
//! and a checkpoint go through the same code.

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::dtype::widen;
use crate::error::{Error, Result};
use crate::lora::{LoraConfig, LoraLinear};
use crate::rope::{Rope, apply_rope};
use crate::weights::{Init, NamedTensor, RandomInit, WeightSource};

/// Score given to masked attention entries. Minus infinity is exact and the cheapest for the
/// softmax's exponential (a large finite score took libm's underflow path, with `errno`, for
/// every masked entry); no row is fully masked ([`attention_mask`]), so none becomes NaN.
const MASKED: f32 = f32::NEG_INFINITY;

fn param1(
    source: &mut dyn WeightSource,
    name: &str,
    n: usize,
    init: Init,
    device: &Device,
) -> Result<Param<Tensor<1>>> {
    let values = source.tensor(name, &[n], init)?;
    Ok(Param::from_tensor(Tensor::from_data(
        TensorData::new(values, [n]),
        device,
    )))
}

/// Reads a transformers `[out, in]` weight and stores it transposed, as burn's `[in, out]`.
fn linear(
    source: &mut dyn WeightSource,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &Device,
) -> Result<Linear> {
    let w = source.tensor(&format!("{prefix}.weight"), &[d_out, d_in], Init::Normal)?;
    let mut transposed = vec![0.0; w.len()];
    for o in 0..d_out {
        for i in 0..d_in {
            transposed[i * d_out + o] = w[o * d_in + i];
        }
    }
    let weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(transposed, [d_in, d_out]),
        device,
    ));
    let bias = if bias {
        Some(param1(
            source,
            &format!("{prefix}.bias"),
            d_out,
            Init::Zeros,
            device,
        )?)
    } else {
        None
    };
    Ok(Linear { weight, bias })
}

/// A decoder projection: [`linear`] without adapter (see [`crate::lora`]).
fn projection(
    source: &mut dyn WeightSource,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &Device,
) -> Result<LoraLinear> {
    linear(source, prefix, d_in, d_out, bias, device).map(LoraLinear::new)
}

fn rms_norm(
    source: &mut dyn WeightSource,
    name: &str,
    d: usize,
    eps: f64,
    device: &Device,
) -> Result<RmsNorm> {
    Ok(RmsNorm {
        gamma: param1(source, name, d, Init::Ones, device)?,
        epsilon: eps,
    })
}

pub(crate) fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

fn export_linear(out: &mut Vec<NamedTensor>, prefix: &str, l: &Linear) {
    let [d_in, d_out] = l.weight.val().dims();
    let w = host(l.weight.val().transpose().reshape([d_in * d_out]));
    out.push(NamedTensor {
        name: format!("{prefix}.weight"),
        shape: vec![d_out, d_in],
        values: w,
    });
    if let Some(b) = &l.bias {
        out.push(NamedTensor {
            name: format!("{prefix}.bias"),
            shape: vec![d_out],
            values: host(b.val()),
        });
    }
}

fn export_norm(out: &mut Vec<NamedTensor>, name: &str, n: &RmsNorm) {
    let values = host(n.gamma.val());
    out.push(NamedTensor {
        name: name.into(),
        shape: vec![values.len()],
        values,
    });
}

/// The SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Gate projection `[hidden, intermediate]`.
    pub gate_proj: LoraLinear,
    /// Up projection `[hidden, intermediate]`.
    pub up_proj: LoraLinear,
    /// Down projection `[intermediate, hidden]`.
    pub down_proj: LoraLinear,
}

impl Mlp {
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

/// Multi-head attention with grouped key/value heads and rotary positions.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection `[hidden, heads * head_dim]`.
    pub q_proj: LoraLinear,
    /// Key projection `[hidden, kv_heads * head_dim]`.
    pub k_proj: LoraLinear,
    /// Value projection `[hidden, kv_heads * head_dim]`.
    pub v_proj: LoraLinear,
    /// Output projection `[heads * head_dim, hidden]`.
    pub o_proj: LoraLinear,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl Attention {
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - `cos`, `sin`: `[batch, 1, seq, head_dim]` or `[1, 1, seq, head_dim]`
    /// - `mask`: `[batch, kv_heads, (heads / kv_heads) · seq, keys]` (see `attention_mask`),
    ///   true where a query must not look
    /// - returns `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        mask: Option<&Tensor<4, Bool>>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, kv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        // [batch, seq, heads * head_dim] -> [batch, heads, seq, head_dim]
        let q = self
            .q_proj
            .forward(x.clone())
            .reshape([b, t, h, hd])
            .swap_dims(1, 2);
        let k = self
            .k_proj
            .forward(x.clone())
            .reshape([b, t, kv, hd])
            .swap_dims(1, 2);
        let v = self
            .v_proj
            .forward(x)
            .reshape([b, t, kv, hd])
            .swap_dims(1, 2);
        let q = apply_rope(q, cos, sin);
        let k = apply_rope(k, cos, sin);
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => (k, v),
        };
        // Grouped-query attention without copying keys and values per query head: the `rep`
        // query heads that share key/value head j (heads j·rep .. (j+1)·rep) are stacked along
        // the query axis and multiplied with that head's keys and values once.
        let rep = h / kv;
        let q = if rep == 1 {
            q
        } else {
            q.reshape([b, kv, rep * t, hd])
        };
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (hd as f64).sqrt()); // [b, kv, rep·t, keys]
        let scores = match mask {
            Some(mask) => scores.mask_fill(mask.clone(), MASKED),
            None => scores,
        };
        let context = softmax(scores, 3).matmul(v).reshape([b, h, t, hd]);
        self.o_proj
            .forward(context.swap_dims(1, 2).reshape([b, t, h * hd]))
    }
}

/// One pre-norm decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Norm before attention.
    pub input_layernorm: RmsNorm,
    /// Self-attention.
    pub self_attn: Attention,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm,
    /// Feed-forward block.
    pub mlp: Mlp,
}

impl DecoderLayer {
    /// `x + attn(norm(x))`, then `+ mlp(norm(·))`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`; `cos`, `sin`, `mask` as for [`Attention::forward`]
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        mask: Option<&Tensor<4, Bool>>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor<3> {
        let h = self.self_attn.forward(
            self.input_layernorm.forward(x.clone()),
            cos,
            sin,
            mask,
            cache,
        );
        let x = x + h;
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
    }
}

/// Which positions the output head is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    /// Every position (scoring, training).
    All,
    /// Only the last position (sampling: saves the head's matmul over the prompt).
    Last,
}

/// A decoder-only language model of the Llama/Qwen2 family.
#[derive(Module, Debug)]
pub struct CausalLm {
    /// Token embedding `[vocab, hidden]`.
    pub embed_tokens: Embedding,
    /// Decoder layers.
    pub layers: Vec<DecoderLayer>,
    /// Final norm.
    pub norm: RmsNorm,
    /// Output head `[hidden, vocab]`; `None` when tied to the embedding.
    pub lm_head: Option<Linear>,
    #[module(skip)]
    config: ModelConfig,
    #[module(skip)]
    rope: Rope,
    /// The settings of the LoRA adapters, when the projections carry some (see [`crate::lora`]).
    #[module(skip)]
    pub(crate) lora: Option<LoraConfig>,
}

impl CausalLm {
    /// A model with transformers' random initialisation, deterministic in `seed`.
    pub fn init(config: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::build(
            config,
            &mut RandomInit::new(seed, config.initializer_range),
            device,
        )
    }

    /// Builds the model, asking `source` for every tensor under transformers' names.
    pub fn build(
        config: &ModelConfig,
        source: &mut dyn WeightSource,
        device: &Device,
    ) -> Result<Self> {
        let (d, f, v) = (
            config.hidden_size,
            config.intermediate_size,
            config.vocab_size,
        );
        let (q_dim, kv_dim) = (
            config.num_heads * config.head_dim,
            config.num_kv_heads * config.head_dim,
        );
        let eps = config.rms_norm_eps;
        let embed = source.tensor("model.embed_tokens.weight", &[v, d], Init::Normal)?;
        let embed_tokens = Embedding {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(embed, [v, d]), device)),
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("model.layers.{i}");
            let (bias, o_bias, mlp_bias) = (config.qkv_bias, config.o_bias, config.mlp_bias);
            layers.push(DecoderLayer {
                input_layernorm: rms_norm(
                    source,
                    &format!("{p}.input_layernorm.weight"),
                    d,
                    eps,
                    device,
                )?,
                self_attn: Attention {
                    q_proj: projection(
                        source,
                        &format!("{p}.self_attn.q_proj"),
                        d,
                        q_dim,
                        bias,
                        device,
                    )?,
                    k_proj: projection(
                        source,
                        &format!("{p}.self_attn.k_proj"),
                        d,
                        kv_dim,
                        bias,
                        device,
                    )?,
                    v_proj: projection(
                        source,
                        &format!("{p}.self_attn.v_proj"),
                        d,
                        kv_dim,
                        bias,
                        device,
                    )?,
                    o_proj: projection(
                        source,
                        &format!("{p}.self_attn.o_proj"),
                        q_dim,
                        d,
                        o_bias,
                        device,
                    )?,
                    num_heads: config.num_heads,
                    num_kv_heads: config.num_kv_heads,
                    head_dim: config.head_dim,
                },
                post_attention_layernorm: rms_norm(
                    source,
                    &format!("{p}.post_attention_layernorm.weight"),
                    d,
                    eps,
                    device,
                )?,
                mlp: Mlp {
                    gate_proj: projection(
                        source,
                        &format!("{p}.mlp.gate_proj"),
                        d,
                        f,
                        mlp_bias,
                        device,
                    )?,
                    up_proj: projection(
                        source,
                        &format!("{p}.mlp.up_proj"),
                        d,
                        f,
                        mlp_bias,
                        device,
                    )?,
                    down_proj: projection(
                        source,
                        &format!("{p}.mlp.down_proj"),
                        f,
                        d,
                        mlp_bias,
                        device,
                    )?,
                },
            });
        }
        let norm = rms_norm(source, "model.norm.weight", d, eps, device)?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(linear(source, "lm_head", d, v, false, device)?)
        };
        source.finish()?;
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            config: config.clone(),
            rope: Rope::new(config),
            lora: None,
        })
    }

    /// Every parameter under its transformers name and shape, for saving: the base weights
    /// only, without LoRA adapters (see [`CausalLm::export_lora`] and [`CausalLm::merge_lora`]).
    pub fn export(&self) -> Vec<NamedTensor> {
        let mut out = Vec::new();
        let embed = self.embed_tokens.weight.val();
        let [v, d] = embed.dims();
        out.push(NamedTensor {
            name: "model.embed_tokens.weight".into(),
            shape: vec![v, d],
            values: host(embed.reshape([v * d])),
        });
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            export_norm(
                &mut out,
                &format!("{p}.input_layernorm.weight"),
                &layer.input_layernorm,
            );
            export_linear(
                &mut out,
                &format!("{p}.self_attn.q_proj"),
                &layer.self_attn.q_proj.base,
            );
            export_linear(
                &mut out,
                &format!("{p}.self_attn.k_proj"),
                &layer.self_attn.k_proj.base,
            );
            export_linear(
                &mut out,
                &format!("{p}.self_attn.v_proj"),
                &layer.self_attn.v_proj.base,
            );
            export_linear(
                &mut out,
                &format!("{p}.self_attn.o_proj"),
                &layer.self_attn.o_proj.base,
            );
            export_norm(
                &mut out,
                &format!("{p}.post_attention_layernorm.weight"),
                &layer.post_attention_layernorm,
            );
            export_linear(
                &mut out,
                &format!("{p}.mlp.gate_proj"),
                &layer.mlp.gate_proj.base,
            );
            export_linear(
                &mut out,
                &format!("{p}.mlp.up_proj"),
                &layer.mlp.up_proj.base,
            );
            export_linear(
                &mut out,
                &format!("{p}.mlp.down_proj"),
                &layer.mlp.down_proj.base,
            );
        }
        export_norm(&mut out, "model.norm.weight", &self.norm);
        if let Some(head) = &self.lm_head {
            export_linear(&mut out, "lm_head", head);
        }
        out
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// An empty KV cache for rows with the given left padding; its storage is sized by the
    /// prefill and doubles when full, up to what the context admits.
    pub fn new_cache(&self, left_pad: Vec<usize>) -> KvCache {
        self.new_cache_with_capacity(left_pad, 0)
    }

    /// An empty KV cache whose storage holds `capacity` slots (padding included) without
    /// growing: pass the rows' budget, the padded prompt width plus the most new tokens.
    pub fn new_cache_with_capacity(&self, left_pad: Vec<usize>, capacity: usize) -> KvCache {
        // The longest row may fill the context after the shortest padding.
        let max_slots =
            self.config.max_position_embeddings + left_pad.iter().copied().min().unwrap_or(0);
        KvCache::with_capacity(self.config.num_layers, left_pad, capacity).with_max_slots(max_slots)
    }

    /// Logits for every position of a batch of left-padded sequences (right padding needs no
    /// mask: later positions never influence earlier ones).
    ///
    /// # Shapes
    /// - `tokens`: `[batch, seq]`; `left_pad`: one count per row (empty means no padding)
    /// - returns `[batch, seq, vocab]`
    pub fn forward(&self, tokens: Tensor<2, Int>, left_pad: &[usize]) -> Result<Tensor<3>> {
        let [b, _] = tokens.dims();
        let pad = if left_pad.is_empty() {
            vec![0; b]
        } else {
            left_pad.to_vec()
        };
        self.run(tokens, &pad, 0, None, LogitsFor::All)
    }

    /// Runs new tokens through the model, appending their keys and values to `cache`: the first
    /// call is the prefill, later calls decode.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, new]` with `batch == cache.batch_size()`
    /// - returns `[batch, new, vocab]`, or `[batch, 1, vocab]` with [`LogitsFor::Last`]
    pub fn forward_cached(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        logits: LogitsFor,
    ) -> Result<Tensor<3>> {
        let [b, _] = tokens.dims();
        if b != cache.batch_size() {
            return Err(Error::InvalidInput(format!(
                "{b} rows of tokens for a cache of {} rows",
                cache.batch_size()
            )));
        }
        let pad = cache.left_pad().to_vec();
        let start = cache.len();
        self.run(tokens, &pad, start, Some(cache), logits)
    }

    fn run(
        &self,
        tokens: Tensor<2, Int>,
        left_pad: &[usize],
        start: usize,
        cache: Option<&mut KvCache>,
        logits: LogitsFor,
    ) -> Result<Tensor<3>> {
        let x = self.hidden(tokens, left_pad, start, cache)?;
        let [_, t, _] = x.dims();
        let x = match logits {
            LogitsFor::All => x,
            LogitsFor::Last => x.narrow(1, t - 1, 1),
        };
        Ok(self.head(x))
    }

    /// The final (normalised) hidden states of new tokens written from slot `start`: the
    /// layers without the output head.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, new]` -> `[batch, new, hidden]`
    pub(crate) fn hidden(
        &self,
        tokens: Tensor<2, Int>,
        left_pad: &[usize],
        start: usize,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor<3>> {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let slots = start + t;
        if left_pad.len() != b {
            return Err(Error::InvalidInput(format!(
                "{} left-padding counts for {b} rows",
                left_pad.len()
            )));
        }
        let longest = slots.saturating_sub(left_pad.iter().copied().min().unwrap_or(0));
        if longest > self.config.max_position_embeddings {
            return Err(Error::ContextOverflow {
                len: longest,
                max: self.config.max_position_embeddings,
            });
        }
        let p = self.positions(left_pad, start, t, &device);
        let mut x = self.embed(tokens);
        for (i, layer) in self.layers.iter().enumerate() {
            let attn_cache = cache.as_deref_mut().map(|c| (c, i));
            x = layer.forward(x, &p.cos, &p.sin, p.mask.as_ref(), attn_cache);
        }
        if let Some(cache) = cache {
            cache.advance(t);
        }
        Ok(self.norm.forward(x))
    }

    /// The rotary tables and attention mask of `new` tokens written from slot `start` of rows
    /// with the given left padding, both built on `device`.
    pub(crate) fn positions(
        &self,
        left_pad: &[usize],
        start: usize,
        new: usize,
        device: &Device,
    ) -> Positions {
        let (cos, sin) = self.rope.tables(left_pad, start, new, device);
        let groups = [
            self.config.num_kv_heads,
            self.config.num_heads / self.config.num_kv_heads,
        ];
        let mask = attention_mask(left_pad, start, new, groups, device);
        Positions { cos, sin, mask }
    }

    /// The token embeddings of `tokens`, in f32 whatever dtype the table is stored in.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, seq]` -> `[batch, seq, hidden]`
    pub(crate) fn embed(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        widen(self.embed_tokens.forward(tokens))
    }

    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> `[batch, seq, vocab]`
    fn head(&self, x: Tensor<3>) -> Tensor<3> {
        let w = match &self.lm_head {
            Some(head) => head.weight.val(), // [hidden, vocab]
            None => self.embed_tokens.weight.val().transpose(),
        };
        let [b, t, d] = x.dims();
        x.reshape([b * t, d])
            .matmul(widen(w))
            .reshape([b, t, self.config.vocab_size])
    }
}

/// What every layer of one forward pass shares: rotary tables and the attention mask.
pub(crate) struct Positions {
    /// `[batch, 1, new, head_dim]`, or `[1, 1, new, head_dim]` when no row is padded
    pub(crate) cos: Tensor<4>,
    /// As `cos`.
    pub(crate) sin: Tensor<4>,
    /// `[batch, kv_heads, (heads / kv_heads) · new, keys]`; `None` when nothing needs masking.
    pub(crate) mask: Option<Tensor<4, Bool>>,
}

/// The mask of query `i` (slot `start + i`) against key slot `j` of row `b`: masked when the key
/// lies in the future or in the row's padding, except a padding slot's own key, so that no query
/// is masked everywhere (a padding slot's output is never read). Built on the device from the
/// rows' padding counts, in the layout attention scores take ([`Attention::forward`]): the `rep`
/// query heads that share each of the `kv` key/value heads stacked along the query axis, so
/// every layer applies it without a copy. `None` when nothing needs masking.
///
/// # Shapes
/// - returns `[batch, kv, rep · new, start + new]`: entry `[b, g, r · new + i, j]` is the mask
///   of query `i` against key `j` in row `b`, for every group `g` and head `r`
fn attention_mask(
    left_pad: &[usize],
    start: usize,
    new: usize,
    [kv, rep]: [usize; 2],
    device: &Device,
) -> Option<Tensor<4, Bool>> {
    let padded = left_pad.iter().any(|&p| p > 0);
    if new == 1 && !padded {
        return None;
    }
    let (b, keys) = (left_pad.len(), start + new);
    let shape = [b, kv, rep * new, keys];
    let key = Tensor::<1, Int>::arange(0..keys as i64, device)
        .reshape([1, 1, 1, keys])
        .expand(shape);
    let slot = Tensor::<1, Int>::arange(start as i64..keys as i64, device)
        .reshape([1, 1, new, 1])
        .repeat_dim(2, rep)
        .expand(shape);
    let future = key.clone().greater(slot.clone());
    if !padded {
        return Some(future);
    }
    let pads: Vec<i64> = left_pad.iter().map(|&p| p as i64).collect();
    let pad = Tensor::<1, Int>::from_data(TensorData::new(pads, [b]), device)
        .reshape([b, 1, 1, 1])
        .expand(shape);
    let padding = key.clone().lower(pad).bool_and(key.not_equal(slot));
    Some(future.bool_or(padding))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceSpec;

    /// Every query keeps at least one key (a padding slot its own), so masking with minus
    /// infinity never leaves a softmax over nothing.
    #[test]
    fn no_query_is_masked_everywhere() {
        let device = DeviceSpec::Cpu.device().unwrap();
        for (pad, start, new) in [(vec![3, 0], 0, 5), (vec![2, 4], 4, 1), (vec![1, 5], 0, 6)] {
            let mask = attention_mask(&pad, start, new, [1, 1], &device).unwrap();
            let [b, _, n, keys] = mask.dims();
            let masked = mask.into_data().try_to_vec::<bool>().unwrap();
            for (q, row) in masked.chunks(keys).enumerate() {
                assert!(
                    row.contains(&false),
                    "query {q} of {b}x{n} masked everywhere"
                );
            }
        }
    }

    proptest::proptest! {
        /// The mask built on the device masks exactly the future and the row's padding (but a
        /// padding slot's own key), and is shared by the rows when none is padded.
        #[test]
        fn the_device_mask_follows_the_rule(
            pad in proptest::collection::vec(0usize..5, 1..4),
            start in 0usize..6,
            new in 1usize..6,
            kv in 1usize..3,
            rep in 1usize..3,
        ) {
            let device = DeviceSpec::Cpu.device().unwrap();
            let keys = start + new;
            let padded = pad.iter().any(|&p| p > 0);
            match attention_mask(&pad, start, new, [kv, rep], &device) {
                None => proptest::prop_assert!(new == 1 && !padded),
                Some(mask) => {
                    proptest::prop_assert_eq!(mask.dims(), [pad.len(), kv, rep * new, keys]);
                    let got = mask.into_data().try_to_vec::<bool>().unwrap();
                    let mut want = Vec::new();
                    for &p in &pad {
                        for _group in 0..kv {
                            for _head in 0..rep {
                                for slot in start..keys {
                                    want.extend((0..keys).map(|j| j > slot || (j < p && j != slot)));
                                }
                            }
                        }
                    }
                    proptest::prop_assert_eq!(got, want);
                }
            }
        }
    }

    /// A left-padded batch gives finite logits everywhere, padding slots included, and a row's
    /// real positions do not see its padding.
    #[test]
    fn left_padded_logits_are_finite_and_ignore_the_padding() {
        let device = DeviceSpec::Cpu.device().unwrap();
        let config = ModelConfig::from_json_str(
            r#"{"model_type": "llama", "vocab_size": 16, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 1, "max_position_embeddings": 32}"#,
        )
        .unwrap();
        let model = CausalLm::init(&config, 1, &device).unwrap();
        let ids = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [1, 6]), &device);
        let padded = model.forward(ids(vec![0, 0, 0, 5, 6, 7]), &[3]).unwrap();
        let other_pad = model.forward(ids(vec![9, 9, 9, 5, 6, 7]), &[3]).unwrap();
        let all = padded.clone().into_data().try_to_vec::<f32>().unwrap();
        assert!(all.iter().all(|x| x.is_finite()));
        let real = |t: Tensor<3>| t.narrow(1, 3, 3).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(real(padded), real(other_pad));
    }
}
