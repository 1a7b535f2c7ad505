//! The five papers the workspace reproduces, as a typed value: each experiment names its paper
//! by a variant, and reports print the paper's number, authors and title the same way.

use serde::Serialize;
use std::fmt;

/// One of the papers in `shared/papers` (indexed in its README).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Paper {
    /// 000: Dogra & Redman, partitioned Koopman stepping of training (koopman-train).
    KoopmanTraining,
    /// 001: Manojlović et al., Koopman mode analysis of training (koopman-train).
    TrainingAnalysis,
    /// 002: Aswani, Jabari & Shafique, layers replaced by linear operators (koopman-layers).
    LayerReplacement,
    /// 003: Hashimoto & Iwata, deep Koopman-layered models (koopman-layers, koopman-core).
    KoopmanLayered,
    /// 004: Redman et al., algorithmic (semi-)conjugacy (koopman-core).
    Conjugacy,
}

impl Paper {
    /// Every paper, in the index's order.
    pub const ALL: [Paper; 5] = [
        Paper::KoopmanTraining,
        Paper::TrainingAnalysis,
        Paper::LayerReplacement,
        Paper::KoopmanLayered,
        Paper::Conjugacy,
    ];

    /// The paper's number in the index (`"000"` to `"004"`).
    pub fn number(self) -> &'static str {
        match self {
            Paper::KoopmanTraining => "000",
            Paper::TrainingAnalysis => "001",
            Paper::LayerReplacement => "002",
            Paper::KoopmanLayered => "003",
            Paper::Conjugacy => "004",
        }
    }

    /// The paper's text file in `shared/papers`.
    pub fn file(self) -> &'static str {
        match self {
            Paper::KoopmanTraining => "000_4e50f6693a45af7a.txt",
            Paper::TrainingAnalysis => "001_8fa850dfd66a3bf3.txt",
            Paper::LayerReplacement => "002_cd5f7ddcb23b8926.txt",
            Paper::KoopmanLayered => "003_b2ec78fd3044568a.txt",
            Paper::Conjugacy => "004_281d23b435c7cdd4.txt",
        }
    }

    /// Authors and title.
    pub fn citation(self) -> &'static str {
        match self {
            Paper::KoopmanTraining => {
                "Dogra & Redman, Optimizing Neural Networks via Koopman Operator Theory (NeurIPS 2020)"
            }
            Paper::TrainingAnalysis => {
                "Manojlović et al., Applications of Koopman Mode Analysis to Neural Networks (2020)"
            }
            Paper::LayerReplacement => {
                "Aswani, Jabari & Shafique, Representing Neural Network Layers as Linear Operations via Koopman Operator Theory"
            }
            Paper::KoopmanLayered => {
                "Hashimoto & Iwata, Deep Koopman-layered model with universal property based on Toeplitz matrices"
            }
            Paper::Conjugacy => {
                "Redman et al., Algorithmic (Semi-)Conjugacy via Koopman Operator Theory"
            }
        }
    }
}

impl fmt::Display for Paper {
    /// `000 Dogra & Redman, Optimizing ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.number(), self.citation())
    }
}

#[cfg(test)]
mod tests {
    use super::Paper;

    #[test]
    fn every_paper_names_a_file_of_the_index() {
        // The papers sit beside the clone (`../shared/papers`) in this project's checkouts; a
        // clone without them checks the numbering only.
        let index = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/papers/README.md"),
        )
        .ok();
        for p in Paper::ALL {
            assert!(p.file().starts_with(p.number()), "{p:?}");
            if let Some(index) = &index {
                assert!(
                    index.contains(p.file()),
                    "{} not in the papers' index",
                    p.file()
                );
            }
        }
    }
}
