//! Turning token-id rows of different lengths into checked, padded tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// Rows of token ids packed into one `[batch, longest]` tensor.
#[derive(Debug, Clone)]
pub struct PaddedBatch {
    /// The ids, padded on the left or the right.
    pub tokens: Tensor<2, Int>,
    /// Padding slots at the start of each row (all zero for right padding).
    pub left_pad: Vec<usize>,
    /// Real length of each row.
    pub lengths: Vec<usize>,
}

/// Checks that every id is in the vocabulary and that no row exceeds the context.
pub fn check_rows(config: &ModelConfig, rows: &[Vec<u32>]) -> Result<()> {
    for row in rows {
        if let Some((position, &id)) = row
            .iter()
            .enumerate()
            .find(|(_, id)| **id as usize >= config.vocab_size)
        {
            return Err(Error::TokenOutOfVocab {
                id,
                position,
                vocab_size: config.vocab_size,
            });
        }
        if row.len() > config.max_position_embeddings {
            return Err(Error::ContextOverflow {
                len: row.len(),
                max: config.max_position_embeddings,
            });
        }
    }
    Ok(())
}

fn pack(
    config: &ModelConfig,
    rows: &[Vec<u32>],
    pad_id: u32,
    left: bool,
    device: &Device,
) -> Result<PaddedBatch> {
    check_rows(config, rows)?;
    if rows.is_empty() || rows.iter().any(Vec::is_empty) {
        return Err(Error::InvalidInput(
            "a batch needs at least one row and no empty rows".into(),
        ));
    }
    let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut data = Vec::with_capacity(rows.len() * longest);
    let mut left_pad = Vec::with_capacity(rows.len());
    for row in rows {
        let pad = longest - row.len();
        let ids = row.iter().map(|&id| id as i64);
        let pads = std::iter::repeat_n(i64::from(pad_id), pad);
        if left {
            data.extend(pads.chain(ids));
            left_pad.push(pad);
        } else {
            data.extend(ids.chain(pads));
            left_pad.push(0);
        }
    }
    Ok(PaddedBatch {
        tokens: Tensor::from_data(TensorData::new(data, [rows.len(), longest]), device),
        left_pad,
        lengths: rows.iter().map(Vec::len).collect(),
    })
}

/// Left-pads rows (prompts for generation: every row ends at the same slot).
pub fn left_padded(
    config: &ModelConfig,
    rows: &[Vec<u32>],
    pad_id: u32,
    device: &Device,
) -> Result<PaddedBatch> {
    pack(config, rows, pad_id, true, device)
}

/// Right-pads rows (scoring and training: positions need no shift, pads come last).
pub fn right_padded(
    config: &ModelConfig,
    rows: &[Vec<u32>],
    pad_id: u32,
    device: &Device,
) -> Result<PaddedBatch> {
    pack(config, rows, pad_id, false, device)
}
