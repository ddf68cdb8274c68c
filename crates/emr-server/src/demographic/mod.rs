//! Patients (`demographic`): the record, its SOAP and JSON shapes, and the services over it.

pub mod json;
pub mod record;
pub mod rest;
pub mod soap;
pub mod store;
pub mod transfer;
