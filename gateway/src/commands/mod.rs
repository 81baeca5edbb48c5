//! The `surge` subcommands beside serving: the local scaler, the load simulator and the
//! manifest check. Each takes its parsed arguments and the loaded settings.

pub mod check;
pub mod key;
pub mod scaler;
pub mod simulate;
