//! Grouping helpers: turning verl-style per-sample group ids into index lists, and the small
//! statistics (mean, standard deviation) every estimator shares.

use std::collections::HashMap;
use std::hash::Hash;

/// Indices of the samples of each group, groups in order of first appearance, members in input
/// order.
///
/// This is verl's `index` array (one uid per sample) turned into groups:
/// `group_indices(&["a", "b", "a"]) == [[0, 2], [1]]`.
pub fn group_indices<G: Eq + Hash>(group_ids: &[G]) -> Vec<Vec<usize>> {
    let mut slot: HashMap<&G, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, id) in group_ids.iter().enumerate() {
        let g = *slot.entry(id).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// Mean of `values` in f64 (0 for an empty slice).
pub(crate) fn mean(values: &[f32]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64
}

/// Standard deviation of `values` in f64: with Bessel's correction (divide by n − 1, as
/// `torch.std` does by default) when `unbiased`, else the population std (divide by n, as
/// `np.std`). Returns 0 when the divisor would be 0.
pub(crate) fn std(values: &[f32], unbiased: bool) -> f64 {
    let n = values.len();
    let denom = if unbiased { n.saturating_sub(1) } else { n };
    if denom == 0 {
        return 0.0;
    }
    let m = mean(values);
    let ss: f64 = values
        .iter()
        .map(|&v| {
            let d = f64::from(v) - m;
            d * d
        })
        .sum();
    (ss / denom as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_in_first_appearance_order() {
        assert_eq!(
            group_indices(&["a", "b", "a", "c", "b"]),
            vec![vec![0, 2], vec![1, 4], vec![3]]
        );
        assert!(group_indices::<u32>(&[]).is_empty());
    }

    #[test]
    fn std_bessel_and_population() {
        let v = [1.0, 0.0, 0.0, 1.0];
        assert!((std(&v, false) - 0.5).abs() < 1e-12);
        assert!((std(&v, true) - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(std(&[3.0], true), 0.0);
    }
}
