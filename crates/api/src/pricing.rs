//! Builds the price catalog from configuration: the built-in prices, then
//! `PRICING_FILE` (read here, parsed by `charlie-pricing`), then `MODEL_ALIASES`.

use crate::{Settings, config::env::ConfigError};
use charlie_pricing::Catalog;

/// The catalog the server prices with; what `PRICING_FILE` held is logged
/// as one line (entries loaded, entries skipped as not priced per token).
pub fn load_catalog(settings: &Settings) -> Result<Catalog, ConfigError> {
    let (catalog, summary) = load_catalog_with_summary(settings)?;
    if let Some(line) = summary {
        tracing::info!("{line}");
    }
    Ok(catalog)
}

/// The catalog, and the one-line summary of `PRICING_FILE` when it is set.
pub fn load_catalog_with_summary(
    settings: &Settings,
) -> Result<(Catalog, Option<String>), ConfigError> {
    let mut catalog = Catalog::builtin();
    let mut summary = None;
    if let Some(path) = &settings.pricing_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("PRICING_FILE", format!("cannot read {path}: {e}")))?;
        let (loaded, what) = catalog
            .load_custom_prices(&text)
            .map_err(|e| ConfigError::new("PRICING_FILE", format!("{path}: {e}")))?;
        catalog = loaded;
        summary = Some(format!("PRICING_FILE {path}: {what}"));
    }
    if let Some(spec) = &settings.model_aliases {
        let pairs = charlie_pricing::parse_aliases(spec)
            .map_err(|e| ConfigError::new("MODEL_ALIASES", e.to_string()))?;
        catalog = catalog.with_aliases(pairs);
    }
    Ok((catalog, summary))
}
