//! Output formats shared by the module's stats endpoints.

pub mod prometheus;
