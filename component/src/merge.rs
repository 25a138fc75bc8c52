//! The merger resource's driver: the crate's push/pull [`rbdiff::merge::PushMerge`]
//! with failures converted to the WIT shape.

use rbdiff::DecodeError;
use rbdiff::merge::{MergeErrorKind, MergeStreamError, Phase};

pub use rbdiff::merge::PullStep;

/// What kind of failure (see the WIT `merge-error-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeFailureKind {
    /// An input is invalid (`decode` says how).
    InvalidInput,
    /// Snapshot names do not chain.
    SnapshotChain,
    /// No inputs.
    NoInputs,
    /// The caller broke the protocol.
    Usage,
}

/// A merge failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeFailure {
    /// Kind.
    pub kind: MergeFailureKind,
    /// Input at fault.
    pub input: Option<usize>,
    /// Phase (`None`: a call-protocol error).
    pub phase: Option<Phase>,
    /// The fault located in the input's stream.
    pub decode: Option<DecodeError>,
    /// Message (the crate's, in rbd's words).
    pub message: String,
}

impl From<MergeStreamError> for MergeFailure {
    fn from(e: MergeStreamError) -> Self {
        let kind = match &e.kind {
            MergeErrorKind::Chain { .. } => MergeFailureKind::SnapshotChain,
            MergeErrorKind::NoInputs => MergeFailureKind::NoInputs,
            MergeErrorKind::Usage(_) => MergeFailureKind::Usage,
            _ => MergeFailureKind::InvalidInput,
        };
        MergeFailure {
            kind,
            input: e.input,
            phase: (kind != MergeFailureKind::Usage).then_some(e.phase),
            decode: e.located,
            message: e.to_string(),
        }
    }
}

/// The push/pull merge driver with WIT-shaped failures.
#[derive(Debug)]
pub struct PushMerge(rbdiff::merge::PushMerge);

impl PushMerge {
    /// A merge of `n` inputs into a `format` diff.
    pub fn new(n: usize, format: rbdiff::Format) -> Self {
        PushMerge(rbdiff::merge::PushMerge::new(n, format))
    }

    /// Bytes held: pushed but not decoded yet, plus output not pulled yet.
    pub fn held_bytes(&self) -> usize {
        self.0.held_bytes()
    }

    /// Size of the merged image, once the headers are read.
    pub fn size(&self) -> Option<u64> {
        self.0.size()
    }

    /// The next chunk of input `i`; an empty chunk ends it.
    pub fn push(&mut self, i: usize, chunk: &[u8]) -> Result<(), MergeFailure> {
        self.0.push(i, chunk).map_err(MergeFailure::from)
    }

    /// Runs until `max` output bytes are ready, an input is needed, or the
    /// merge is complete.
    pub fn pull(&mut self, max: usize) -> Result<PullStep, MergeFailure> {
        self.0.pull(max).map_err(MergeFailure::from)
    }
}
