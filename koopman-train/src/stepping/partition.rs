//! The partitions of paper 000 (Fig. 1): which weights share one Koopman operator.
//!
//! A *layer* is a 2-D parameter `<prefix>.weight` of shape `(out, in)` with an optional
//! `<prefix>.bias` of shape `(out,)` (candle-nn / PyTorch Linear naming). Per layer:
//!
//! - [`Partition::SingleWeight`]: every weight and bias on its own (`d = 1`);
//! - [`Partition::QuasiNode`]`(q)`: the incoming weights and bias of one node in chunks of `q`
//!   (the last chunk of a node holds the remainder, never dropped);
//! - [`Partition::Node`]: the `in + 1` incoming weights and bias of one node;
//! - [`Partition::Layer`]: all of the layer's weights and biases.
//!
//! [`PartitionSpec::Network`] puts every parameter of the model in one operator. Parameters
//! that belong to no layer named by the spec (a 1-D scale, say) are evolved as single weights,
//! so the plan always covers the whole model.
//!
//! ```
//! use koopman_train::stepping::{Partition, PartitionPlan, PartitionSpec, Recorder};
//!
//! # fn main() -> koopman_train::Result<()> {
//! let rec = Recorder::with_layout(vec![
//!     ("0.weight".into(), vec![3, 4]),
//!     ("0.bias".into(), vec![3]),
//! ])?;
//! let plan = PartitionPlan::build(rec.params(), &PartitionSpec::uniform(Partition::QuasiNode(2)))?;
//! // 3 nodes x (4 weights + 1 bias) in chunks of 2: sizes 2, 2, 1 per node.
//! assert_eq!(plan.num_groups(), 9);
//! assert_eq!(plan.size_counts(), vec![(1, 3), (2, 6)]);
//! # Ok(()) }
//! ```

use super::recorder::ParamInfo;
use crate::error::{Result, TrainError};
use std::collections::BTreeMap;

/// How the parameters of one layer are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Partition {
    /// One operator per weight or bias (`q = 1`).
    SingleWeight,
    /// Node vectors cut into chunks of `q` (remainder chunk kept).
    QuasiNode(usize),
    /// One operator per node: its incoming weights and bias.
    Node,
    /// One operator per layer.
    Layer,
}

/// The partition of a whole model.
#[derive(Clone, Debug, PartialEq)]
pub enum PartitionSpec {
    /// One operator for every parameter of the model.
    Network,
    /// The same partition for every layer found in the model.
    Uniform(Partition),
    /// Named layers (prefixes such as `"0"`, `"2"`) with their partitions.
    PerLayer(Vec<(String, Partition)>),
}

impl PartitionSpec {
    /// The same partition for every layer.
    pub fn uniform(p: Partition) -> Self {
        PartitionSpec::Uniform(p)
    }
}

/// Flat parameter indices of every operator; the groups are disjoint and cover the model.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionPlan {
    groups: Vec<Vec<usize>>,
    n: usize,
}

struct LayerParams<'a> {
    weight: &'a ParamInfo,
    bias: Option<&'a ParamInfo>,
}

fn layers(params: &[ParamInfo]) -> BTreeMap<String, LayerParams<'_>> {
    let mut out = BTreeMap::new();
    for p in params {
        if let Some(prefix) = p.name.strip_suffix(".weight") {
            if p.shape.len() == 2 {
                let bias = params
                    .iter()
                    .find(|b| b.name == format!("{prefix}.bias") && b.shape == [p.shape[0]]);
                out.insert(prefix.to_string(), LayerParams { weight: p, bias });
            }
        }
    }
    out
}

impl PartitionPlan {
    /// The plan of `spec` over a parameter layout (from [`Recorder::params`](super::Recorder::params)).
    /// Fails with [`TrainError::UnknownName`] when the spec names a layer the model lacks and
    /// with [`TrainError::InvalidArgument`] for `q = 0`.
    pub fn build(params: &[ParamInfo], spec: &PartitionSpec) -> Result<Self> {
        let n: usize = params.iter().map(|p| p.len).sum();
        if let PartitionSpec::Network = spec {
            return Self::from_groups(n, vec![(0..n).collect()]);
        }
        let found = layers(params);
        let chosen: Vec<(String, Partition)> = match spec {
            PartitionSpec::Network => unreachable!("handled above"),
            PartitionSpec::Uniform(p) => found.keys().map(|k| (k.clone(), *p)).collect(),
            PartitionSpec::PerLayer(v) => v.clone(),
        };
        let mut groups = Vec::new();
        let mut covered = vec![false; n];
        for (prefix, part) in &chosen {
            let layer = found.get(prefix).ok_or_else(|| {
                TrainError::UnknownName(format!(
                    "layer '{prefix}' (no 2-D parameter '{prefix}.weight'; layers: {})",
                    found.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            let (out, inp) = (layer.weight.shape[0], layer.weight.shape[1]);
            let node = |j: usize| -> Vec<usize> {
                let mut v: Vec<usize> = (0..inp)
                    .map(|k| layer.weight.offset + j * inp + k)
                    .collect();
                if let Some(b) = layer.bias {
                    v.push(b.offset + j);
                }
                v
            };
            let mut layer_groups: Vec<Vec<usize>> = match *part {
                Partition::Layer => vec![(0..out).flat_map(node).collect()],
                Partition::Node => (0..out).map(node).collect(),
                Partition::SingleWeight => (0..out).flat_map(node).map(|i| vec![i]).collect(),
                Partition::QuasiNode(0) => {
                    return Err(TrainError::InvalidArgument(
                        "quasi-node chunk size q must be >= 1".into(),
                    ))
                }
                Partition::QuasiNode(q) => (0..out)
                    .flat_map(|j| node(j).chunks(q).map(<[usize]>::to_vec).collect::<Vec<_>>())
                    .collect(),
            };
            for g in &layer_groups {
                for &i in g {
                    if covered[i] {
                        return Err(TrainError::InvalidArgument(format!(
                            "layer '{prefix}' is named twice in the partition"
                        )));
                    }
                    covered[i] = true;
                }
            }
            groups.append(&mut layer_groups);
        }
        groups.extend((0..n).filter(|&i| !covered[i]).map(|i| vec![i]));
        Self::from_groups(n, groups)
    }

    /// A plan from explicit groups of flat indices into `n` parameters; they must be non-empty,
    /// disjoint and cover `0..n`.
    pub fn from_groups(n: usize, groups: Vec<Vec<usize>>) -> Result<Self> {
        let mut seen = vec![false; n];
        for g in &groups {
            if g.is_empty() {
                return Err(TrainError::InvalidArgument("empty partition group".into()));
            }
            for &i in g {
                if i >= n || seen[i] {
                    return Err(TrainError::InvalidArgument(format!(
                        "partition index {i} out of range or repeated (n = {n})"
                    )));
                }
                seen[i] = true;
            }
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(TrainError::InvalidArgument(format!(
                "parameter {i} belongs to no partition group"
            )));
        }
        Ok(Self { groups, n })
    }

    /// The groups (flat indices).
    pub fn groups(&self) -> &[Vec<usize>] {
        &self.groups
    }

    /// Number of operators.
    pub fn num_groups(&self) -> usize {
        self.groups.len()
    }

    /// Number of parameters covered.
    pub fn num_params(&self) -> usize {
        self.n
    }

    /// Largest group size.
    pub fn max_size(&self) -> usize {
        self.groups.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// `(size, count)` for every group size, ascending.
    pub fn size_counts(&self) -> Vec<(usize, usize)> {
        let mut m = BTreeMap::new();
        for g in &self.groups {
            *m.entry(g.len()).or_insert(0) += 1;
        }
        m.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stepping::Recorder;

    fn rec() -> Recorder {
        Recorder::with_layout(vec![
            ("0.weight".into(), vec![2, 3]),
            ("0.bias".into(), vec![2]),
            ("2.weight".into(), vec![1, 2]),
            ("2.bias".into(), vec![1]),
            ("scale".into(), vec![2]),
        ])
        .unwrap()
    }

    #[test]
    fn partitions_cover_the_model() -> Result<()> {
        let r = rec();
        // Layout as given: 0.weight [0..6), 0.bias [6, 7], 2.weight [8, 9], 2.bias [10],
        // scale [11, 12].
        let node = PartitionPlan::build(r.params(), &PartitionSpec::uniform(Partition::Node))?;
        assert_eq!(node.groups()[0], vec![0, 1, 2, 6]);
        assert_eq!(node.groups()[1], vec![3, 4, 5, 7]);
        assert_eq!(node.groups()[2], vec![8, 9, 10]);
        assert_eq!(node.size_counts(), vec![(1, 2), (3, 1), (4, 2)]);
        let layer = PartitionPlan::build(r.params(), &PartitionSpec::uniform(Partition::Layer))?;
        assert_eq!(layer.size_counts(), vec![(1, 2), (3, 1), (8, 1)]);
        let single =
            PartitionPlan::build(r.params(), &PartitionSpec::uniform(Partition::SingleWeight))?;
        assert_eq!(single.num_groups(), 13);
        let net = PartitionPlan::build(r.params(), &PartitionSpec::Network)?;
        assert_eq!(net.size_counts(), vec![(13, 1)]);
        let quasi = PartitionPlan::build(
            r.params(),
            &PartitionSpec::PerLayer(vec![("0".into(), Partition::QuasiNode(3))]),
        )?;
        // Layer 0: two nodes of 4 -> chunks 3 + 1 each; the rest single weights.
        assert_eq!(quasi.size_counts(), vec![(1, 7), (3, 2)]);
        Ok(())
    }

    #[test]
    fn unknown_layer_and_bad_groups_are_errors() {
        let r = rec();
        let e = PartitionPlan::build(
            r.params(),
            &PartitionSpec::PerLayer(vec![("4".into(), Partition::Node)]),
        )
        .unwrap_err();
        assert!(matches!(e, TrainError::UnknownName(_)), "{e}");
        assert!(
            PartitionPlan::build(r.params(), &PartitionSpec::uniform(Partition::QuasiNode(0)))
                .is_err()
        );
        assert!(PartitionPlan::from_groups(3, vec![vec![0, 1]]).is_err());
        assert!(PartitionPlan::from_groups(2, vec![vec![0, 1], vec![1]]).is_err());
    }
}
