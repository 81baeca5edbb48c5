//! SQL, one module per table. Every query on owned data takes the owner's entity id, so a
//! query that crosses tenants cannot be written by accident.

pub mod api_keys;
pub mod dead_jobs;
pub mod entities;
pub mod flows;
pub mod jobs;
pub mod overview;
pub mod partitions;
pub mod personas;
pub mod retention;
pub mod settings;
pub mod unconfirmed;
