//! OSCAR's REST transfer objects (`ws/rest/to/`), with the JSON names OSCAR's Jackson writes.
//!
//! OSCAR 19 serialises these with Jackson 1.9 defaults (reference `oscar-wire.md` §2.1): nulls
//! are written as `null` rather than left out, `java.util.Date` is a number of epoch
//! milliseconds, integers are numbers and lists are always arrays. The types here keep those
//! rules: an `Option` serialises as `null`, a date is an `i64` of milliseconds, and fields are
//! declared in the order of the Java fields, because Jackson 1.9 writes them in that order and
//! some clients compare captured answers textually.
//!
//! The crate does no I/O. What goes out is built by the EMR server from its own records; what
//! comes in ([`DemographicInput`]) is only parsed here and validated by the server.

mod demographic;
mod document;
mod input;
mod provider;
mod response;

pub use demographic::{
    AddressTo1, AgeTo1, DemographicExtTo1, DemographicSearchResult, DemographicTo1,
};
pub use document::DocumentTo1;
pub use input::{AddressInput, DateInput, DemographicInput, Ignored, Patch};
pub use provider::ProviderTo1;
pub use response::{
    AbstractSearchResponse, ErrorResponse, FieldErrorTo, GenericRestResponse, OscarSearchResponse,
};
