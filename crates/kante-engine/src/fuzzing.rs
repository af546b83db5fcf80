//! Entry points for the fuzz targets (`fuzz/`): the engine's parsers of
//! untrusted bytes, reachable from outside without making their modules API.

pub use crate::instance::backup_index::{
    fit_config, parse_backup_yaml, parse_index, validate_backup_name,
};
pub use crate::instance::cloudinit;
pub use crate::instance::exec::{parse_control, Control};
pub use crate::instance::templates::{render, TemplateInstance};
