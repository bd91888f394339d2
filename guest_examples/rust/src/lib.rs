//! `contains`: DataFlare's contains filter (guest_examples/contains_filter.py)
//! written in Rust against `wit/plugin.wit` alone, with no Python inside.
//!
//! It keeps the records whose value contains the bytes of parameter `needle`
//! (default `error`; an empty needle keeps everything, as `bytes.find(b"")`
//! does). Build: `cargo build --release --target wasm32-wasip2`; the component
//! is `target/wasm32-wasip2/release/contains_filter.wasm`.

mod framing;
mod params;

use std::sync::Mutex;

use dataflare::plugin::types::{AggregateEmit, ParamDecl, PluginKind};
use exports::dataflare::plugin::plugin::{
    AggregateOutput, CallError, FilterOutput, Guest, LookBackOutput, PluginInfo, RecordsOutput,
};

wit_bindgen::generate!({ path: "../../wit", world: "processor" });

const NAME: &str = "contains";
/// What `describe` reports as the source and what messages name, like the
/// Python SDK's origin (the plugin's file).
const ORIGIN: &str = "guest_examples/rust/src/lib.rs";
const SDK_VERSION: &str = concat!("rust-", env!("CARGO_PKG_VERSION"));

/// The needle `init` resolved; `None` until `init` succeeds. A Mutex rather
/// than `static mut`: the component is single-threaded, but safe code stays safe.
static NEEDLE: Mutex<Option<Vec<u8>>> = Mutex::new(None);

struct Contains;

impl Guest for Contains {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: NAME.into(),
            kind: PluginKind::Filter,
            params: Some(
                params::DECLARED
                    .iter()
                    .map(|(name, default)| ParamDecl {
                        name: (*name).into(),
                        default: Some((*default).into()),
                    })
                    .collect(),
            ),
            // What the SDK reports for a non-aggregate: its defaults.
            initial: String::new(),
            emit: AggregateEmit::Each,
            sdk_version: SDK_VERSION.into(),
            origin: ORIGIN.into(),
            has_look_back: false,
            window: None,
            state: None, // keeps nothing between batches
            parsed_json: false, // the parsed column is marshal data, for CPython guests
        }
    }

    fn init(given: Vec<(String, String)>) -> Result<(), CallError> {
        let needle = params::resolve_needle(&format!("plugin '{NAME}' ({ORIGIN})"), &given)
            .map_err(CallError::Configuration)?;
        *lock() = Some(needle);
        Ok(())
    }

    fn filter(batch: String) -> Result<FilterOutput, CallError> {
        let needle = lock()
            .clone()
            .ok_or_else(|| unsupported("init must be called before any batch"))?;
        let frame = framing::latin1_bytes(&batch).map_err(not_a_batch)?;
        let values = framing::batch_values(&frame).map_err(not_a_batch)?;
        let kept: Vec<u32> = (0u32..)
            .zip(&values)
            .filter(|(_, value)| contains(value, &needle))
            .map(|(index, _)| index)
            .collect();
        Ok(FilterOutput {
            kept: framing::latin1_text(&framing::index_list(&kept)),
            consumed: values.len() as u32, // fits: the count was a u32
            error: None,                   // a substring test cannot fail on a record
        })
    }

    fn map(_: String) -> Result<RecordsOutput, CallError> {
        Err(wrong_kind("map"))
    }

    fn filter_map(_: String) -> Result<RecordsOutput, CallError> {
        Err(wrong_kind("filter_map"))
    }

    fn array_map(_: String) -> Result<RecordsOutput, CallError> {
        Err(wrong_kind("array_map"))
    }

    fn aggregate(_: String, _: Option<String>) -> Result<AggregateOutput, CallError> {
        Err(wrong_kind("aggregate"))
    }

    /// No `@look_back` hook: like the SDK, check the batch and consume it all.
    fn look_back(batch: String) -> Result<LookBackOutput, CallError> {
        if lock().is_none() {
            return Err(unsupported("init must be called before look-back"));
        }
        let frame = framing::latin1_bytes(&batch).map_err(not_a_batch)?;
        let count = framing::batch_values(&frame).map_err(not_a_batch)?.len();
        Ok(LookBackOutput {
            accumulator: None,
            consumed: count as u32,
            error: None,
        })
    }

    /// No declared state: the empty `state` framing, as the SDK returns for such a plugin.
    fn snapshot_state() -> Result<String, CallError> {
        if lock().is_none() {
            return Err(unsupported("init must be called before snapshot-state"));
        }
        Ok(framing::latin1_text(EMPTY_STATE))
    }

    /// No declared state: only the empty state is accepted, as by the SDK.
    fn restore_state(state: String) -> Result<(), CallError> {
        if lock().is_none() {
            return Err(unsupported("init must be called before restore-state"));
        }
        let frame = framing::latin1_bytes(&state).map_err(not_a_batch)?;
        let entries = framing::batch_values(&frame).map_err(not_a_batch)?.len();
        if entries > 0 {
            return Err(CallError::Configuration(format!(
                "plugin '{NAME}' ({ORIGIN}) declares no state, so it cannot take a snapshot \
                 of {entries} entries"
            )));
        }
        Ok(())
    }
}

export!(Contains);

/// The empty `state` framing (wit/plugin.wit): magic `DFR1`, count 0, flags 0.
const EMPTY_STATE: &[u8] = b"DFR1\0\0\0\0\0";

/// Whether `needle` occurs in `value`; the empty needle occurs everywhere.
fn contains(value: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || value.windows(needle.len()).any(|window| window == needle)
}

fn lock() -> std::sync::MutexGuard<'static, Option<Vec<u8>>> {
    // A poisoned lock only means a panic happened while it was held; with
    // panic = "abort" that cannot be observed, and the value is still whole.
    NEEDLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn not_a_batch(reason: String) -> CallError {
    CallError::Serialization(format!("the batch is not a record-batch: {reason}"))
}

fn unsupported(message: &str) -> CallError {
    CallError::Unsupported(message.into())
}

/// The SDK shim's words for an export of another kind.
fn wrong_kind(kind: &str) -> CallError {
    CallError::Unsupported(format!(
        "plugin '{NAME}' is a filter plugin, not a {kind} plugin"
    ))
}

#[cfg(test)]
mod tests {
    use super::contains;

    #[test]
    fn contains_is_bytes_find() {
        assert!(contains(b"an error", b"error"));
        assert!(contains(b"", b""));
        assert!(contains(b"x", b""));
        assert!(!contains(b"err", b"error"));
        assert!(contains(b"ro\xff", b"\xff"));
    }
}
