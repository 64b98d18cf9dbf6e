//! The async client of wasmrpc: calls to one host or several, multiplexed
//! over one connection per host, with deadlines, cancellation, failover
//! between hosts and the `processed` rules of the protocol.
//!
//! This crate compiles no WebAssembly engine: a program that only calls
//! wasmrpc functions depends on it (and on [`wasmrpc_protocol`], re-exported
//! as [`protocol`]), not on the host.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wasmrpc_client::Client;
//!
//! let client = Client::connect("127.0.0.1:7101").await?;
//! let sum: i64 = client.call("math.add", (2, 3)).await?;
//! assert_eq!(sum, 5);
//! # Ok(())
//! # }
//! ```

mod client;
mod connection;
mod context;
pub mod outbound;
mod regions;
pub mod stream;
pub mod tls;
pub mod typed;

pub use client::{CallOptions, Client, HostView};
pub use connection::{ClientOptions, Connection, FALLBACK_PROTOCOL_VERSION, Probe};
pub use context::CallContext;
pub use tls::ClientTls;
pub use wasmrpc_protocol as protocol;
pub use wasmrpc_protocol::{CallError, ErrorCode, Processed};

/// Generates a typed client for a plugin from its WIT world: a struct per
/// plugin with one async method per function it exports, Rust types for the
/// WIT's records, variants, enums and flags, and a struct per exported
/// interface.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // The path is relative to the calling crate's Cargo.toml.
/// wasmrpc_client::bindgen!({ path: "../../guest-examples/math/wit", world: "math" });
/// wasmrpc_client::bindgen!({ path: "../../guest-examples/inventory/wit" });
///
/// let client = wasmrpc_client::Client::connect("127.0.0.1:7101").await?;
/// let math = Math::new(&client);
/// assert_eq!(math.add(2, 3).await?, 5); // calls `math.add`
/// // `divide` returns `result<s64, string>`: its own error is the inner `Err`.
/// assert_eq!(math.divide(1, 0).await?, Err("division by zero".to_owned()));
/// let refused = Inventory::new(&client).stock().reserve("sku-2", 5).await?;
/// assert_eq!(refused, Err(stock::StockError::Insufficient(3)));
/// # Ok(())
/// # }
/// ```
///
/// # Input
///
/// - `path`: the WIT folder (or file), or a list of them with the world's
///   own last and its dependencies before it (`["../../wit", "wit"]` for a
///   plugin that imports the host interface). Relative to the calling
///   crate's folder (`CARGO_MANIFEST_DIR`); cargo rebuilds the caller when
///   the WIT files change.
/// - `world` (optional when the package has one world): the world to call.
/// - `plugin` (optional): the plugin name callers address, the stem of its
///   `.wasm` file. The WIT does not know it; it defaults to the world's name.
///
/// # What it generates
///
/// At the call site: the world's own types and the plugin's stub, named after
/// the plugin in UpperCamelCase (`Math`; `MathClient` if a WIT type already
/// has that name). For each interface the stubs use, a module named after the
/// interface (`stock`) with its types and, for an exported interface, its stub
/// (`stock::Stock`), which the plugin's stub hands out (`Inventory::stock()`).
/// Invoke the macro in a `mod` of its own when two plugins' names could meet.
///
/// - Every stub has `new(&Client)` (it keeps a clone: clones share the
///   connections) and `with_options(CallOptions)`, the options of every call
///   it makes; each method calls [`Client::call_with`] with the function's
///   callable name: `plugin.function` for the world's functions,
///   `plugin.interface.function` for an interface's (the interface name
///   without package or version). Methods are the function names in
///   snake_case (`echo_nested_option`; `new_` for a function called `new`),
///   take their arguments by value (`&str` for a `string`), and carry the
///   WIT's doc comments.
/// - A function whose result is `result<T, E>` returns
///   `Result<Result<T, E>, CallError>`: the host answers its `err` with a
///   `handler_error` whose `detail` is the error value, which comes back
///   decoded as the inner `Err`. Every other failure, and a `handler_error`
///   whose detail is not an `E`, is the outer `Err`.
/// - Types follow the mapping of PROTOCOL.md §8 through [`typed`]: records
///   become structs with snake_case fields, variants and enums Rust enums with
///   UpperCamelCase cases (a case's payload is its only field, so a `tuple`
///   payload is a tuple), `option`/`list`/`tuple`/`result` the standard types,
///   `list<u8>` a `Vec<u8>` (a CBOR byte string on the wire), `map<K, V>` a
///   `BTreeMap`. The wire keeps the WIT's kebab-case names. Records, variants
///   and enums derive `Debug`, `Clone`, `PartialEq` and serde's traits (enums
///   also `Copy`, `Eq` and `Hash`).
/// - Flags become a struct with a `bool` per flag, `Default` when none is set
///   (`Style { bold: true, ..Style::default() }`). It travels as the list of
///   the set flags' names in declaration order, and reads them in any order;
///   an unknown name fails to decode.
/// - Functions that are not callable get no method, as the host leaves them
///   out of its catalog: resource methods and constructors, `async`
///   functions, and functions whose types hold resources, futures, streams or
///   error contexts.
///
/// The generated code needs no dependency but `wasmrpc_client` (serde comes
/// through it).
///
/// # Compile errors
///
/// At the macro's input: a path with no WIT, WIT that does not parse (with
/// the file, line and column), a world the package does not have, a package
/// with several worlds and no `world`, an unknown key, a plugin name that is
/// not one.
pub use wasmrpc_client_macros::bindgen;

/// What the code `bindgen!` generates refers to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use ciborium::Value;
    pub use serde;
}
