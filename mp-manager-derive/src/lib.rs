//! # mp-manager-derive
//!
//! The `#[shared]` attribute of `mp-manager` (re-exported there as
//! `mp_manager::shared`; see its documentation).
//!
//! ```ignore
//! #[mp_manager::shared]
//! impl Counter { pub fn incr(&mut self, by: i64) -> i64 { ... } }
//! ```

use proc_macro::TokenStream;

/// Placeholder replaced below.
#[proc_macro_attribute]
pub fn shared(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
