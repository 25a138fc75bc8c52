//! The rbdiff codec as a WebAssembly component.
//!
//! Implements the WIT world `rbdiff:codec/plugin@0.1.0` (`wit/codec.wit`):
//! a streaming decoder resource, `inspect`/`validate` conveniences and an
//! N-way merger with bounded memory. All format logic is in the `rbdiff`
//! crate; this crate converts types and drives the push-style merge.
//!
//! Build: `cargo build --release -p rbdiff-component --target wasm32-wasip2`.

mod apply;
mod convert;
pub mod device;
pub mod images;
pub mod merge;

/// The WIT bindings. In a module of their own: the imported
/// `rbdiff:codec/block-device` is generated as a module `rbdiff`, which at
/// the crate root would shadow the `rbdiff` crate.
mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
    });
}
pub use bindings::exports;

use convert::{EventList, decode_error, options_config, summary};
use core::cell::RefCell;
use exports::rbdiff::codec::codec as wit;
use rbdiff::DecodeError;
use rbdiff::inspect::{InspectOptions, InspectSession};

/// The exported component.
pub struct Component;

impl wit::Guest for Component {
    type Decoder = DecoderResource;
    type Merger = MergerResource;

    fn default_options() -> wit::Options {
        convert::default_options()
    }

    fn version() -> String {
        rbdiff_version().into()
    }

    fn inspect(chunks: Vec<Vec<u8>>, options: wit::Options) -> wit::Summary {
        let mut s = DecodeState::new(&options);
        for c in &chunks {
            if s.push(c, &mut EventList::discard()).is_err() {
                break;
            }
        }
        let _ = s.end(&mut EventList::discard());
        summary(&s.summary())
    }

    fn validate(
        chunks: Vec<Vec<u8>>,
        options: wit::Options,
    ) -> Result<Vec<wit::DecodeError>, wit::DecodeError> {
        let mut s = DecodeState::new(&options);
        for c in &chunks {
            s.push(c, &mut EventList::discard())
                .map_err(|e| decode_error(&e))?;
        }
        s.end(&mut EventList::discard())
            .map_err(|e| decode_error(&e))?;
        Ok(summary(&s.summary()).warnings)
    }
}

/// The crate version of the codec.
pub fn rbdiff_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The state of one decoder: the crate's inspection session.
struct DecodeState(InspectSession);

impl DecodeState {
    fn new(options: &wit::Options) -> Self {
        DecodeState(InspectSession::new(
            options_config(options),
            InspectOptions::new()
                .with_max_records(options.max_records as usize)
                .with_max_warnings(options.max_warnings as usize),
        ))
    }

    fn push(&mut self, chunk: &[u8], out: &mut EventList) -> Result<(), DecodeError> {
        // After a successful `end` the decoder is done: more bytes decode as
        // trailing bytes (a warning or an error, as configured).
        self.0
            .feed_with(chunk, false, |offset, ev, _| out.push(offset, ev))
            .map(|_| ())
    }

    fn end(&mut self, out: &mut EventList) -> Result<(), DecodeError> {
        self.0.end_with(|offset, ev, _| out.push(offset, ev))
    }

    fn summary(&self) -> rbdiff::inspect::Summary {
        self.0.summary(self.0.position())
    }
}

/// The `decoder` resource.
pub struct DecoderResource(RefCell<DecodeState>);

impl wit::GuestDecoder for DecoderResource {
    fn new(options: wit::Options) -> Self {
        DecoderResource(RefCell::new(DecodeState::new(&options)))
    }

    fn push(&self, chunk: Vec<u8>) -> Result<Vec<wit::EventSummary>, wit::DecodeError> {
        let mut out = EventList::new();
        self.0
            .borrow_mut()
            .push(&chunk, &mut out)
            .map_err(|e| decode_error(&e))?;
        Ok(out.into_vec())
    }

    fn finish_events(&self) -> Result<Vec<wit::EventSummary>, wit::DecodeError> {
        let mut out = EventList::new();
        self.0
            .borrow_mut()
            .end(&mut out)
            .map_err(|e| decode_error(&e))?;
        Ok(out.into_vec())
    }

    fn finish(&self) -> Result<wit::Summary, wit::DecodeError> {
        let mut st = self.0.borrow_mut();
        st.end(&mut EventList::discard())
            .map_err(|e| decode_error(&e))?;
        Ok(summary(&st.summary()))
    }

    fn summary(&self) -> wit::Summary {
        summary(&self.0.borrow().summary())
    }

    fn position(&self) -> u64 {
        self.0.borrow().0.position()
    }
}

/// The `merger` resource.
pub struct MergerResource(RefCell<merge::PushMerge>);

impl wit::GuestMerger for MergerResource {
    fn new(inputs: u32, format: wit::MergeFormat) -> Self {
        let format = match format {
            wit::MergeFormat::DiffV1 => rbdiff::Format::DiffV1,
            wit::MergeFormat::DiffV2 => rbdiff::Format::DiffV2,
        };
        MergerResource(RefCell::new(merge::PushMerge::new(inputs as usize, format)))
    }

    fn push(&self, input: u32, chunk: Vec<u8>) -> Result<(), wit::MergeError> {
        self.0
            .borrow_mut()
            .push(input as usize, &chunk)
            .map_err(|e| convert::merge_error(&e))
    }

    fn pull(&self, max: u32) -> Result<wit::MergeStep, wit::MergeError> {
        let step = self
            .0
            .borrow_mut()
            .pull(max as usize)
            .map_err(|e| convert::merge_error(&e))?;
        Ok(wit::MergeStep {
            output: step.output,
            need_input: step
                .need_input
                .map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
            done: step.done,
        })
    }

    fn size(&self) -> Option<u64> {
        self.0.borrow().size()
    }
}

impl images::wit::Guest for Component {
    fn default_apply_options() -> images::wit::ApplyOptions {
        apply::default_options()
    }

    fn apply(
        image: &device::Device,
        diff: Vec<u8>,
        options: images::wit::ApplyOptions,
    ) -> Result<images::wit::ApplyResult, images::wit::ImageError> {
        apply::apply(image, &diff, &options)
    }

    fn default_export_options() -> images::wit::ExportOptions {
        images::default_export_options()
    }

    fn export_diff(
        base: Option<&device::Device>,
        image: &device::Device,
        options: images::wit::ExportOptions,
    ) -> Result<images::wit::ExportResult, images::wit::ImageError> {
        images::export(base, image, &options)
    }
}

// Exported only in the wasm build: natively (unit tests, `cargo build` of the
// workspace) the component's export names would not link into a cdylib.
#[cfg(target_arch = "wasm32")]
bindings::export!(Component with_types_in bindings);
