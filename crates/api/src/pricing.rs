//! Builds the price catalog from configuration: the built-in prices, then
//! `PRICING_FILE` (read here, parsed by `charlie-pricing`), then `MODEL_ALIASES`.

use crate::{Settings, config::ConfigError};
use charlie_pricing::Catalog;

/// The catalog the server and the CLI price with.
pub fn load_catalog(settings: &Settings) -> Result<Catalog, ConfigError> {
    let mut catalog = Catalog::builtin();
    if let Some(path) = &settings.pricing_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("PRICING_FILE", format!("cannot read {path}: {e}")))?;
        catalog = catalog
            .with_custom_prices(&text)
            .map_err(|e| ConfigError::new("PRICING_FILE", format!("{path}: {e}")))?;
    }
    if let Some(spec) = &settings.model_aliases {
        let pairs = charlie_pricing::parse_aliases(spec)
            .map_err(|e| ConfigError::new("MODEL_ALIASES", e.to_string()))?;
        catalog = catalog.with_aliases(pairs);
    }
    Ok(catalog)
}
