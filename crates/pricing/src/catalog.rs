//! The price catalog: built-in and custom dated prices, aliases, lookup and
//! cost computation.

pub use crate::price::{ModelPrice, PriceSource, Rates, Tier, TokenType};
use crate::{
    PricingError,
    extract::{CallUsage, Extraction},
    matching,
};
use charlie_domain::{TokenUsage, Usd};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock},
};

/// Most distinct model names remembered per catalog; names beyond it are
/// resolved every time, so arbitrary input cannot grow memory.
const RESOLVE_CACHE_LIMIT: usize = 4096;

/// Which entries a model name resolved to, per table (custom, builtin), in
/// candidate order; dates are applied on every call.
type Resolved = Arc<[(bool, Vec<usize>)]>;
use time::{Date, OffsetDateTime};

/// One rate, prepared when the catalog is built so that pricing a call
/// divides nothing and formats nothing.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_token: Decimal,
    /// `per_token` in USD per million tokens, normalized, as cost lines show it.
    per_mtok: Option<Decimal>,
    /// `per_token` normalized, as mantissa and scale, when it is a
    /// non-negative value whose products can be formed in integers.
    exact: Option<(u128, u32)>,
}

impl Rate {
    fn new(per_token: Decimal) -> Rate {
        let n = per_token.normalize();
        let exact = (n.is_sign_positive() && !n.is_zero())
            .then(|| (u128::try_from(n.mantissa()).ok(), n.scale()))
            .and_then(|(m, s)| m.map(|m| (m, s)));
        Rate {
            per_token,
            per_mtok: per_mtok(per_token),
            exact,
        }
    }

    /// `tokens × rate`, normalized: the same value and representation as
    /// `Decimal::from(tokens).checked_mul(per_token).map(|d| d.normalize())`,
    /// formed in integers when the exact product fits a decimal.
    fn times(&self, tokens: u64) -> Option<Decimal> {
        if let Some((m, scale)) = self.exact
            && let Some(d) = exact_product(tokens, m, scale)
        {
            return Some(d);
        }
        Decimal::from(tokens)
            .checked_mul(self.per_token)
            .map(|d| d.normalize())
    }
}

/// Largest decimal mantissa (96 bits).
const MAX_MANTISSA: u128 = (1u128 << 96) - 1;

/// `tokens × m × 10^-scale` in normal form (no trailing zero while the scale
/// is positive), or `None` when it does not fit a decimal exactly.
fn exact_product(tokens: u64, m: u128, scale: u32) -> Option<Decimal> {
    if tokens == 0 {
        return None;
    }
    let mut t = tokens;
    let mut zeros = 0i64;
    while t.is_multiple_of(10) {
        t /= 10;
        zeros += 1;
    }
    let mut p = u128::from(t).checked_mul(m)?;
    zeros += strip_zeros(&mut p, u32::MAX);
    let mut exp = i64::from(scale) - zeros;
    while exp < 0 {
        p = p.checked_mul(10)?;
        exp += 1;
    }
    if p > MAX_MANTISSA || exp > 28 {
        return None;
    }
    Some(Decimal::from_i128_with_scale(
        i128::try_from(p).ok()?,
        u32::try_from(exp).ok()?,
    ))
}

/// Divides out up to `limit` trailing decimal zeros; returns how many.
fn strip_zeros(p: &mut u128, limit: u32) -> i64 {
    let mut n = 0u32;
    if *p == 0 {
        return 0;
    }
    if let Ok(mut small) = u64::try_from(*p) {
        while n < limit && small.is_multiple_of(10) {
            small /= 10;
            n += 1;
        }
        *p = u128::from(small);
    } else {
        while n < limit && p.is_multiple_of(10) {
            *p /= 10;
            n += 1;
        }
    }
    i64::from(n)
}

/// A running cost total as [`Decimal::checked_add`] forms it (the larger
/// scale of the two operands), kept in integers while it fits.
#[derive(Clone, Copy)]
enum Total {
    Exact(u128, u32),
    Decimal(Decimal),
}

impl Total {
    /// `self + amount`, or `None` where `Decimal::checked_add` fails.
    fn add(self, amount: Decimal) -> Option<Total> {
        if let Total::Exact(p, s) = self
            && let Ok(q) = u128::try_from(amount.mantissa())
        {
            let t = amount.scale();
            let u = s.max(t);
            let sum = 10u128
                .checked_pow(u - s)
                .and_then(|f| p.checked_mul(f))
                .zip(10u128.checked_pow(u - t).and_then(|f| q.checked_mul(f)))
                .and_then(|(a, b)| a.checked_add(b))
                .filter(|r| *r <= MAX_MANTISSA);
            if let Some(r) = sum {
                return Some(Total::Exact(r, u));
            }
        }
        self.decimal().checked_add(amount).map(Total::Decimal)
    }

    fn decimal(self) -> Decimal {
        match self {
            Total::Exact(p, s) => i128::try_from(p)
                .map(|p| Decimal::from_i128_with_scale(p, s))
                .unwrap_or_default(),
            Total::Decimal(d) => d,
        }
    }

    /// The total normalized, as `Decimal::normalize` gives it.
    fn normalized(self) -> Decimal {
        match self {
            Total::Exact(0, _) => Decimal::ZERO,
            Total::Exact(mut p, s) => {
                let n = strip_zeros(&mut p, s);
                let scale = u32::try_from(i64::from(s) - n).unwrap_or(0);
                i128::try_from(p)
                    .map(|p| Decimal::from_i128_with_scale(p, scale))
                    .unwrap_or_default()
            }
            Total::Decimal(d) => d.normalize(),
        }
    }
}

/// The rates of a price or tier, prepared; indexed by [`TokenType::ALL`].
type Prepared = [Option<Rate>; 6];

fn prepare(rates: &Rates) -> Prepared {
    TokenType::ALL.map(|t| rates.get(t).map(Rate::new))
}

/// What pricing needs of a price, prepared once.
#[derive(Debug, Clone)]
struct Ready {
    id: String,
    rates: Prepared,
    /// Tiers by threshold, highest first.
    tiers: Vec<(u64, Prepared)>,
}

impl Ready {
    fn new(price: &ModelPrice) -> Ready {
        let mut tiers: Vec<(u64, Prepared)> = price
            .tiers
            .iter()
            .map(|t| (t.above_input_tokens, prepare(&t.rates)))
            .rev()
            .collect();
        // Stable on the reversed list: among equal thresholds the last listed
        // comes first, as `max_by_key` picked it.
        tiers.sort_by_key(|t| std::cmp::Reverse(t.0));
        Ready {
            id: price.id(),
            rates: prepare(&price.rates),
            tiers,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Table {
    prices: Vec<ModelPrice>,
    ready: Vec<Ready>,
    exact: HashMap<String, Vec<usize>>,
    canonical: HashMap<String, Vec<usize>>,
}

impl Table {
    fn insert(&mut self, price: ModelPrice) {
        let idx = self.prices.len();
        let exact = price.model.trim().to_ascii_lowercase();
        let canonical = matching::canonical(&exact);
        self.exact.entry(exact).or_default().push(idx);
        self.canonical.entry(canonical).or_default().push(idx);
        self.ready.push(Ready::new(&price));
        self.prices.push(price);
    }

    fn entries(&self, candidate: &str) -> Option<&Vec<usize>> {
        self.exact
            .get(candidate)
            .or_else(|| self.canonical.get(candidate))
    }

    /// The price in force on `day` among entries: among those with the
    /// shortest key, the newest valid-from not after `day`. `Err(earliest)`
    /// when entries exist but none is in force yet.
    fn pick(&self, idxs: &[usize], day: Date) -> Option<Result<usize, Date>> {
        let best = idxs
            .iter()
            .filter_map(|i| self.prices.get(*i).map(|p| (*i, p)))
            .filter(|(_, p)| p.valid_from <= day)
            .min_by(|(_, a), (_, b)| {
                a.model
                    .len()
                    .cmp(&b.model.len())
                    .then(b.valid_from.cmp(&a.valid_from))
                    .then(a.model.cmp(&b.model))
            });
        match best {
            Some((i, _)) => Some(Ok(i)),
            None => idxs
                .iter()
                .filter_map(|i| self.prices.get(*i))
                .map(|p| p.valid_from)
                .min()
                .map(Err),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Inner {
    builtin: Table,
    custom: Table,
    aliases: HashMap<String, String>,
}

/// What a custom price file held, as [`Catalog::load_custom_prices`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceFileSummary {
    /// Prices loaded (entries of a LiteLLM table, `[[prices]]` of ours).
    pub loaded: usize,
    /// Aliases loaded (our format only).
    pub aliases: usize,
    /// Names of the entries skipped because nothing in them is priced per
    /// token, sorted.
    pub skipped: Vec<String>,
}

/// How many skipped names the one-line summary lists.
const SKIPPED_NAMED: usize = 5;

impl std::fmt::Display for PriceFileSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} token-priced entries loaded", self.loaded)?;
        if self.aliases > 0 {
            write!(f, ", {} aliases", self.aliases)?;
        }
        if !self.skipped.is_empty() {
            let named = self.skipped.iter().take(SKIPPED_NAMED).map(String::as_str);
            let more = self.skipped.len().saturating_sub(SKIPPED_NAMED);
            write!(
                f,
                "; {} entries without a per-token price skipped ({}{})",
                self.skipped.len(),
                named.collect::<Vec<_>>().join(", "),
                if more > 0 {
                    format!(", and {more} more")
                } else {
                    String::new()
                }
            )?;
        }
        Ok(())
    }
}

/// Built-in and custom prices with model aliases. Immutable once built and
/// cheap to clone and share between threads.
///
/// ```
/// use charlie_domain::TokenUsage;
/// use charlie_pricing::{Catalog, PricingStatus};
/// use time::macros::datetime;
///
/// let catalog = Catalog::builtin().with_alias("prod-chat", "gpt-4o-mini");
/// let cost = catalog.price(Some("prod-chat"), &TokenUsage::new(1_000_000, 1_000_000),
///                          datetime!(2025-06-01 12:00 UTC));
/// assert_eq!(cost.status, PricingStatus::Priced);
/// assert_eq!(cost.total_usd.map(|u| u.to_string()).as_deref(), Some("0.75"));
/// ```
#[derive(Debug, Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
    /// Name matching is pure but not free; its result per name is kept.
    resolved: Arc<RwLock<HashMap<String, Resolved>>>,
}

fn builtin_inner() -> &'static Arc<Inner> {
    static BUILTIN: OnceLock<Arc<Inner>> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        let mut table = Table::default();
        for price in crate::builtin::prices() {
            table.insert(price);
        }
        Arc::new(Inner {
            builtin: table,
            ..Inner::default()
        })
    })
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::builtin()
    }
}

impl Catalog {
    /// The built-in catalog (parsed once per process).
    pub fn builtin() -> Catalog {
        Catalog {
            inner: Arc::clone(builtin_inner()),
            resolved: Arc::default(),
        }
    }

    /// A catalog with no built-in prices, for tests and custom-only setups.
    pub fn empty() -> Catalog {
        Catalog {
            inner: Arc::new(Inner::default()),
            resolved: Arc::default(),
        }
    }

    /// Layers a custom price file over this catalog: our TOML or JSON
    /// format, or LiteLLM's `model_prices_and_context_window.json`, detected
    /// from the text. Custom prices beat built-in ones.
    ///
    /// ```
    /// use charlie_domain::TokenUsage;
    /// use charlie_pricing::Catalog;
    /// use time::macros::datetime;
    ///
    /// let catalog = Catalog::builtin().with_custom_prices(r#"
    ///     [[prices]]
    ///     model = "gpt-4o"
    ///     valid_from = "2025-01-01"
    ///     input = "2"      # USD per million tokens
    ///     output = "8"
    /// "#)?;
    /// let cost = catalog.price(Some("gpt-4o"), &TokenUsage::new(1000, 1000),
    ///                          datetime!(2025-02-01 0:00 UTC));
    /// assert_eq!(cost.total_usd.map(|u| u.to_string()).as_deref(), Some("0.01"));
    /// # Ok::<(), charlie_pricing::PricingError>(())
    /// ```
    pub fn with_custom_prices(self, text: &str) -> Result<Catalog, PricingError> {
        self.load_custom_prices(text).map(|(catalog, _)| catalog)
    }

    /// [`Catalog::with_custom_prices`], also telling what was loaded and
    /// what was skipped (a LiteLLM table's entries priced per query, image,
    /// second, ..., which carry no per-token price).
    ///
    /// ```
    /// use charlie_pricing::Catalog;
    ///
    /// let (_, summary) = Catalog::empty().load_custom_prices(r#"{
    ///     "gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05},
    ///     "exa_ai/search": {"mode": "search", "tiered_pricing":
    ///         [{"input_cost_per_query": 0.005, "max_results_range": [0, 25]}]}
    /// }"#)?;
    /// assert_eq!((summary.loaded, summary.skipped.len()), (1, 1));
    /// assert_eq!(summary.to_string(),
    ///     "1 token-priced entries loaded; 1 entries without a per-token price skipped (exa_ai/search)");
    /// # Ok::<(), charlie_pricing::PricingError>(())
    /// ```
    pub fn load_custom_prices(
        mut self,
        text: &str,
    ) -> Result<(Catalog, PriceFileSummary), PricingError> {
        let parsed = crate::custom::parse(text)?;
        let summary = PriceFileSummary {
            loaded: parsed.prices.len(),
            aliases: parsed.aliases.len(),
            skipped: parsed.skipped,
        };
        self.resolved = Arc::default();
        let inner = Arc::make_mut(&mut self.inner);
        for price in parsed.prices {
            inner.custom.insert(price);
        }
        for (alias, model) in parsed.aliases {
            inner
                .aliases
                .insert(alias.trim().to_ascii_lowercase(), model);
        }
        Ok((self, summary))
    }

    /// Maps a name (an Azure deployment, say) to a model id.
    pub fn with_alias(mut self, alias: &str, model: &str) -> Catalog {
        self.resolved = Arc::default();
        Arc::make_mut(&mut self.inner)
            .aliases
            .insert(alias.trim().to_ascii_lowercase(), model.trim().to_owned());
        self
    }

    /// Adds every `(alias, model)` pair, as [`parse_aliases`](crate::parse_aliases) returns them.
    pub fn with_aliases<I, A, M>(self, pairs: I) -> Catalog
    where
        I: IntoIterator<Item = (A, M)>,
        A: AsRef<str>,
        M: AsRef<str>,
    {
        pairs
            .into_iter()
            .fold(self, |c, (a, m)| c.with_alias(a.as_ref(), m.as_ref()))
    }

    /// The price in force for `model` on `day`, after aliases and matching.
    pub fn lookup(&self, model: &str, day: Date) -> Option<&ModelPrice> {
        self.resolve(model, day).ok().map(|(p, _)| p)
    }

    fn resolve(&self, model: &str, day: Date) -> Result<(&ModelPrice, &Ready), Option<Date>> {
        if let Ok(map) = self.resolved.read()
            && let Some(r) = map.get(model)
        {
            return self.pick(r, day);
        }
        let r = self.match_name(model);
        if let Ok(mut map) = self.resolved.write()
            && map.len() < RESOLVE_CACHE_LIMIT
        {
            map.insert(model.to_owned(), Arc::clone(&r));
        }
        self.pick(&r, day)
    }

    /// The price in force on `day` among the entries a name resolved to.
    fn pick(
        &self,
        resolved: &[(bool, Vec<usize>)],
        day: Date,
    ) -> Result<(&ModelPrice, &Ready), Option<Date>> {
        let mut earliest: Option<Date> = None;
        for (custom, idxs) in resolved {
            let table = if *custom {
                &self.inner.custom
            } else {
                &self.inner.builtin
            };
            match table.pick(idxs, day) {
                Some(Ok(i)) => {
                    if let (Some(price), Some(ready)) = (table.prices.get(i), table.ready.get(i)) {
                        return Ok((price, ready));
                    }
                }
                Some(Err(first)) => earliest = Some(earliest.map_or(first, |e| e.min(first))),
                None => {}
            }
        }
        Err(earliest)
    }

    /// Every entry list a name matches, custom before built-in, most
    /// specific candidate first.
    fn match_name(&self, model: &str) -> Resolved {
        let key = model.trim().to_ascii_lowercase();
        let target = self.inner.aliases.get(&key).map_or(model, String::as_str);
        let candidates = matching::candidates(target);
        let mut out = Vec::new();
        for (custom, table) in [(true, &self.inner.custom), (false, &self.inner.builtin)] {
            for c in &candidates {
                if let Some(idxs) = table.entries(c) {
                    out.push((custom, idxs.clone()));
                }
            }
        }
        out.into()
    }

    /// Prices one usage of `model` with the price in force at `at`.
    pub fn price(&self, model: Option<&str>, usage: &TokenUsage, at: OffsetDateTime) -> Cost {
        let Some(model) = model.map(str::trim).filter(|m| !m.is_empty()) else {
            return Cost::unpriced(
                None,
                "the payload names no model, so the usage cannot be priced".into(),
            );
        };
        if let Err(e) = usage.validate() {
            return Cost::unpriced(Some(model), format!("usage cannot be priced: {e}"));
        }
        // An instant beyond year 9999 in UTC (`9999-12-31T23:59:59-01:00`)
        // is priced on the last day there is; `to_offset` would panic.
        let day = at
            .checked_to_offset(time::UtcOffset::UTC)
            .map_or(Date::MAX, OffsetDateTime::date);
        match self.resolve(model, day) {
            Ok((price, ready)) => compute(model, price, ready, usage),
            Err(Some(first)) => Cost::unpriced(
                Some(model),
                format!("no price for `{model}` in force on {day}; the earliest starts on {first}"),
            ),
            Err(None) => Cost::unpriced(Some(model), format!("unknown model `{model}`")),
        }
    }

    /// Prices every call of an extraction with its own model and sums them.
    /// No usage found gives an `unpriced` cost, never a priced zero.
    pub fn price_extraction(&self, extraction: &Extraction, at: OffsetDateTime) -> Cost {
        if extraction.usage.is_none() || extraction.calls.is_empty() {
            return Cost::unpriced(
                extraction.model.as_deref(),
                "no usage found in the payload".into(),
            );
        }
        self.price_calls(&extraction.calls, at)
    }

    /// [`Catalog::price_extraction`] of a borrowed extraction.
    pub(crate) fn price_found(
        &self,
        found: &crate::extract::Found<'_>,
        at: OffsetDateTime,
    ) -> Cost {
        match found.calls.as_slice() {
            _ if found.usage.is_none() => {
                Cost::unpriced(found.model, "no usage found in the payload".into())
            }
            [] => Cost::unpriced(found.model, "no usage found in the payload".into()),
            [only] => self.price(only.model, &only.usage, at),
            calls => combine(
                calls
                    .iter()
                    .map(|c| self.price(c.model, &c.usage, at))
                    .collect(),
            ),
        }
    }

    /// Prices several calls and sums them.
    pub fn price_calls(&self, calls: &[CallUsage], at: OffsetDateTime) -> Cost {
        if let [only] = calls {
            return self.price(only.model.as_deref(), &only.usage, at);
        }
        combine(
            calls
                .iter()
                .map(|c| self.price(c.model.as_deref(), &c.usage, at))
                .collect(),
        )
    }

    /// Every price in the catalog, custom first, for listing.
    pub fn models(&self) -> Vec<ModelPriceInfo> {
        let mut rows: Vec<ModelPriceInfo> = self
            .inner
            .custom
            .prices
            .iter()
            .chain(self.inner.builtin.prices.iter())
            .map(ModelPriceInfo::from)
            .collect();
        rows.sort_by(|a, b| {
            (a.source, &a.provider, &a.id, a.valid_from).cmp(&(
                b.source,
                &b.provider,
                &b.id,
                b.valid_from,
            ))
        });
        rows
    }

    /// The configured aliases, sorted.
    pub fn aliases(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .inner
            .aliases
            .iter()
            .map(|(a, m)| (a.clone(), m.clone()))
            .collect();
        v.sort();
        v
    }
}

/// Outcome of pricing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PricingStatus {
    /// Every token type with tokens had a rate.
    Priced,
    /// The model is unknown (or absent, or the usage is missing): no amount.
    Unpriced,
    /// Some token types had no rate; `total_usd` covers only the priced ones.
    Partial,
}

impl PricingStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            PricingStatus::Priced => "priced",
            PricingStatus::Unpriced => "unpriced",
            PricingStatus::Partial => "partial",
        }
    }
}

/// One token type's share of a cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostLine {
    pub token_type: TokenType,
    pub tokens: u64,
    /// The rate applied, in USD per million tokens; null when none applied.
    #[serde(serialize_with = "ser_opt_decimal")]
    pub usd_per_mtok: Option<Decimal>,
    pub usd: Option<Usd>,
    /// Set when the rate is another token type's, as the provider bills it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_of: Option<TokenType>,
    /// The model of this line when a payload held calls to several models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The cost of a usage: exact USD, status, breakdown and the price used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cost {
    /// Decimal string, or null when unpriced.
    pub total_usd: Option<Usd>,
    pub status: PricingStatus,
    /// The model priced, as given.
    pub model: Option<String>,
    /// The catalog key that matched.
    pub matched_model: Option<String>,
    pub price_id: Option<String>,
    #[serde(serialize_with = "ser_opt_date")]
    pub valid_from: Option<Date>,
    /// The long-context tier applied: its prompt-size threshold.
    pub long_context_above_input_tokens: Option<u64>,
    pub breakdown: Vec<CostLine>,
    pub warnings: Vec<String>,
}

impl Cost {
    /// A cost with no amount, and why.
    pub fn unpriced(model: Option<&str>, why: String) -> Cost {
        Cost {
            total_usd: None,
            status: PricingStatus::Unpriced,
            model: model.map(str::to_owned),
            matched_model: None,
            price_id: None,
            valid_from: None,
            long_context_above_input_tokens: None,
            breakdown: Vec::new(),
            warnings: vec![why],
        }
    }
}

fn compute(model: &str, price: &ModelPrice, ready: &Ready, usage: &TokenUsage) -> Cost {
    // Tiers are sorted by threshold, highest first: the first exceeded is
    // the one that applies.
    let tier = ready
        .tiers
        .iter()
        .find(|(above, _)| usage.input_tokens > *above);
    let rate = |t: TokenType| -> Option<&Rate> {
        let i = t.index();
        tier.and_then(|(_, rates)| rates[i].as_ref())
            .or(ready.rates[i].as_ref())
    };

    let cached = usage
        .cache_read_input_tokens
        .saturating_add(usage.cache_creation_input_tokens);
    let counts = [
        (TokenType::Input, usage.input_tokens.saturating_sub(cached)),
        (TokenType::CacheRead, usage.cache_read_input_tokens),
        (
            TokenType::CacheWrite5m,
            usage
                .cache_creation_input_tokens
                .saturating_sub(usage.cache_creation_1h_input_tokens),
        ),
        (
            TokenType::CacheWrite1h,
            usage.cache_creation_1h_input_tokens,
        ),
        (
            TokenType::Output,
            usage.output_tokens.saturating_sub(usage.reasoning_tokens),
        ),
        (TokenType::Reasoning, usage.reasoning_tokens),
    ];
    // How each provider bills a token type the price has no rate for.
    let fallbacks = |t: TokenType| -> &'static [TokenType] {
        match t {
            TokenType::CacheRead | TokenType::CacheWrite5m => &[TokenType::Input],
            TokenType::CacheWrite1h => &[TokenType::CacheWrite5m, TokenType::Input],
            TokenType::Reasoning => &[TokenType::Output],
            TokenType::Input | TokenType::Output => &[],
        }
    };
    let mut warnings = Vec::new();
    let mut lines = Vec::with_capacity(counts.iter().filter(|(_, n)| *n > 0).count());
    let mut total = Total::Exact(0, 0);
    let mut priced_any = false;
    let mut missing_any = false;
    for (t, tokens) in counts {
        if tokens == 0 {
            continue;
        }
        let (applied, rate_of) = match rate(t) {
            Some(r) => (Some(r), None),
            None => match fallbacks(t).iter().find_map(|f| rate(*f).map(|r| (r, *f))) {
                Some((r, f)) => {
                    // Reasoning billed as output is how every provider bills it.
                    if t != TokenType::Reasoning {
                        warnings.push(format!(
                            "no {} rate for `{}`: {tokens} tokens billed at the {} rate",
                            t.as_str(),
                            price.model,
                            f.as_str()
                        ));
                    }
                    (Some(r), Some(f))
                }
                None => (None, None),
            },
        };
        let usd = applied.and_then(|r| r.times(tokens));
        match usd {
            Some(amount) => {
                priced_any = true;
                match total.add(amount) {
                    Some(sum) => total = sum,
                    None => {
                        missing_any = true;
                        warnings.push("cost overflows the decimal range".into());
                    }
                }
            }
            None => {
                missing_any = true;
                warnings.push(if applied.is_some() {
                    format!(
                        "{} cost of {tokens} tokens overflows the decimal range",
                        t.as_str()
                    )
                } else {
                    format!(
                        "no {} rate for `{}`: {tokens} tokens left unpriced",
                        t.as_str(),
                        price.model
                    )
                });
            }
        }
        lines.push(CostLine {
            token_type: t,
            tokens,
            usd_per_mtok: applied.and_then(|r| r.per_mtok),
            usd: usd.map(Usd),
            rate_of,
            model: None,
        });
    }
    let status = match (missing_any, priced_any) {
        (false, _) => PricingStatus::Priced,
        (true, true) => PricingStatus::Partial,
        (true, false) => PricingStatus::Unpriced,
    };
    Cost {
        total_usd: (status != PricingStatus::Unpriced).then(|| Usd(total.normalized())),
        status,
        model: Some(model.to_owned()),
        matched_model: Some(price.model.clone()),
        price_id: Some(ready.id.clone()),
        valid_from: Some(price.valid_from),
        long_context_above_input_tokens: tier.map(|(above, _)| *above),
        breakdown: lines,
        warnings,
    }
}

fn combine(costs: Vec<Cost>) -> Cost {
    let priced = costs.iter().filter(|c| c.total_usd.is_some()).count();
    let all_priced = costs.iter().all(|c| c.status == PricingStatus::Priced);
    let mut status = if all_priced {
        PricingStatus::Priced
    } else if priced == 0 {
        PricingStatus::Unpriced
    } else {
        PricingStatus::Partial
    };
    // Checked, as `compute` sums lines: a call whose amount would overflow
    // the sum is left out of it and the cost is partial.
    let mut overflowed = false;
    let total = (status != PricingStatus::Unpriced).then(|| {
        let mut sum = Decimal::ZERO;
        for amount in costs.iter().filter_map(|c| c.total_usd) {
            match sum.checked_add(amount.0) {
                Some(s) => sum = s,
                None => overflowed = true,
            }
        }
        Usd(sum.normalize())
    });
    if overflowed {
        status = PricingStatus::Partial;
    }
    let first = |f: fn(&Cost) -> Option<String>| -> Option<String> {
        let values: Vec<Option<String>> = costs.iter().map(f).collect();
        match values.first() {
            Some(v) if values.iter().all(|x| x == v) => v.clone(),
            _ => None,
        }
    };
    let model = first(|c| c.model.clone());
    let matched_model = first(|c| c.matched_model.clone());
    let price_id = first(|c| c.price_id.clone());
    let valid_from = price_id
        .as_ref()
        .and_then(|_| costs.first().and_then(|c| c.valid_from));
    let tier = costs
        .iter()
        .filter_map(|c| c.long_context_above_input_tokens)
        .max();
    let mut warnings: Vec<String> = Vec::new();
    let mut breakdown = Vec::new();
    for cost in costs {
        for w in cost.warnings {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        for mut line in cost.breakdown {
            if model.is_none() {
                line.model = cost.model.clone();
            }
            breakdown.push(line);
        }
    }
    let overflow = "cost overflows the decimal range".to_owned();
    if overflowed && !warnings.contains(&overflow) {
        warnings.push(overflow);
    }
    Cost {
        total_usd: total,
        status,
        model,
        matched_model,
        price_id,
        valid_from,
        long_context_above_input_tokens: tier,
        breakdown,
        warnings,
    }
}

fn per_mtok(rate: Decimal) -> Option<Decimal> {
    rate.checked_mul(Decimal::from(1_000_000u32))
        .map(|d| d.normalize())
}

fn ser_opt_decimal<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_str(&d.normalize().to_string()),
        None => s.serialize_none(),
    }
}

fn ser_opt_date<S: Serializer>(v: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_str(&d.to_string()),
        None => s.serialize_none(),
    }
}

/// Rates in USD per million tokens, as decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RatesPerMtok {
    #[serde(serialize_with = "ser_opt_decimal")]
    pub input: Option<Decimal>,
    #[serde(serialize_with = "ser_opt_decimal")]
    pub output: Option<Decimal>,
    #[serde(serialize_with = "ser_opt_decimal")]
    pub cache_read: Option<Decimal>,
    #[serde(serialize_with = "ser_opt_decimal")]
    pub cache_write_5m: Option<Decimal>,
    #[serde(serialize_with = "ser_opt_decimal")]
    pub cache_write_1h: Option<Decimal>,
    #[serde(serialize_with = "ser_opt_decimal")]
    pub reasoning: Option<Decimal>,
}

impl From<&Rates> for RatesPerMtok {
    fn from(r: &Rates) -> Self {
        RatesPerMtok {
            input: r.input.and_then(per_mtok),
            output: r.output.and_then(per_mtok),
            cache_read: r.cache_read.and_then(per_mtok),
            cache_write_5m: r.cache_write_5m.and_then(per_mtok),
            cache_write_1h: r.cache_write_1h.and_then(per_mtok),
            reasoning: r.reasoning.and_then(per_mtok),
        }
    }
}

/// A long-context tier for listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierInfo {
    pub above_input_tokens: u64,
    pub usd_per_mtok: RatesPerMtok,
}

/// One row of `charlie-stats usage models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelPriceInfo {
    pub id: String,
    pub provider: String,
    pub source: PriceSource,
    #[serde(serialize_with = "ser_date")]
    pub valid_from: Date,
    pub price_id: String,
    pub usd_per_mtok: RatesPerMtok,
    pub long_context: Vec<TierInfo>,
}

fn ser_date<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_string())
}

impl From<&ModelPrice> for ModelPriceInfo {
    fn from(p: &ModelPrice) -> Self {
        ModelPriceInfo {
            id: p.model.clone(),
            provider: p.provider.clone(),
            source: p.source,
            valid_from: p.valid_from,
            price_id: p.id(),
            usd_per_mtok: RatesPerMtok::from(&p.rates),
            long_context: p
                .tiers
                .iter()
                .map(|t| TierInfo {
                    above_input_tokens: t.above_input_tokens,
                    usd_per_mtok: RatesPerMtok::from(&t.rates),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The product as pricing formed it before rates were prepared.
    fn slow(tokens: u64, per_token: Decimal) -> Option<Decimal> {
        Decimal::from(tokens)
            .checked_mul(per_token)
            .map(|d| d.normalize())
    }

    fn same(a: Option<Decimal>, b: Option<Decimal>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => {
                a.mantissa() == b.mantissa()
                    && a.scale() == b.scale()
                    && a.to_string() == b.to_string()
            }
            (None, None) => true,
            _ => false,
        }
    }

    fn tokens() -> impl Strategy<Value = u64> {
        prop_oneof![
            1u64..2_000_000,
            (1u64..100_000, 0u32..12).prop_map(|(t, z)| t.saturating_mul(10u64.pow(z))),
            any::<u64>().prop_filter("positive", |t| *t > 0),
        ]
    }

    fn rate() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            // USD per million as the built-in table and our files write it.
            (0u64..100_000_000, 0u32..8).prop_map(|(m, s)| {
                Decimal::from_i128_with_scale(i128::from(m), s)
                    .checked_div(Decimal::from(1_000_000u32))
                    .unwrap_or_default()
            }),
            // Per token, as LiteLLM's file writes it (3e-06, 1.25e-07, ...).
            (0u64..1_000_000_000, 0u32..28)
                .prop_map(|(m, s)| Decimal::from_i128_with_scale(i128::from(m), s)),
            (any::<u64>(), 0u32..28)
                .prop_map(|(m, s)| Decimal::from_i128_with_scale(i128::from(m), s)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn prepared_products_equal_decimal_products(t in tokens(), r in rate()) {
            let fast = Rate::new(r).times(t);
            let slow = slow(t, r);
            prop_assert!(same(fast, slow), "{t} × {r}: {fast:?} vs {slow:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn prepared_totals_equal_decimal_totals(
            lines in prop::collection::vec((tokens(), rate()), 0..7),
        ) {
            let mut slow_total = Some(Decimal::ZERO);
            let mut fast_total = Some(Total::Exact(0, 0));
            for (t, r) in &lines {
                let (Some(a), Some(b)) = (slow(*t, *r), Rate::new(*r).times(*t)) else {
                    continue;
                };
                slow_total = slow_total.and_then(|s| s.checked_add(a));
                fast_total = fast_total.and_then(|f| f.add(b));
            }
            let slow = slow_total.map(|d| d.normalize());
            let fast = fast_total.map(Total::normalized);
            prop_assert!(same(fast, slow), "{lines:?}: {fast:?} vs {slow:?}");
        }
    }

    /// Found by fuzzing (`fuzz/`, target `price_file`): each call's cost
    /// fits a decimal, their sum did not, and summing panicked.
    #[test]
    fn calls_whose_sum_overflows_a_decimal_make_a_partial_cost() -> Result<(), PricingError> {
        let catalog = Catalog::empty().with_custom_prices(
            "[[prices]]\nmodel = \"gpt-4o\"\ninput = \"5\"\noutput = \"21111111111111111111111111\"\n",
        )?;
        let call = CallUsage {
            model: Some("gpt-4o".into()),
            usage: TokenUsage::new(4_000_000_000, 3_000_000_000),
        };
        let at = OffsetDateTime::UNIX_EPOCH;
        let one = catalog.price_calls(std::slice::from_ref(&call), at);
        assert_eq!(one.status, PricingStatus::Priced);
        assert!(one.total_usd.is_some());
        let two = catalog.price_calls(&[call.clone(), call], at);
        assert_eq!(two.status, PricingStatus::Partial);
        assert_eq!(two.total_usd, one.total_usd);
        assert!(
            two.warnings.iter().any(|w| w.contains("overflows")),
            "{:?}",
            two.warnings
        );
        Ok(())
    }

    /// In UTC this instant is beyond year 9999 and `to_offset` panicked on
    /// it (found in review for the fuzz targets; `price_file` prices at it).
    #[test]
    fn an_instant_beyond_year_9999_in_utc_is_priced_on_the_last_day() {
        let at = time::macros::datetime!(9999-12-31 23:59:59 -01:00);
        let cost = Catalog::builtin().price(Some("gpt-4o"), &TokenUsage::new(1_000, 1_000), at);
        assert_eq!(cost.status, PricingStatus::Priced);
        assert_eq!(cost.price_id.as_deref(), Some("builtin:gpt-4o@2024-10-02"));
    }

    #[test]
    fn prepared_products_at_the_edges() {
        let rates = [
            "0",
            "0.000001",
            "0.0000025",
            "30",
            "0.00000000000000000000000001",
        ];
        for text in rates {
            let r = Decimal::from_str_exact(text).unwrap_or_default();
            for t in [
                1,
                10,
                1_000_000,
                999_999_999_999,
                u64::MAX,
                u64::MAX / 10 * 10,
            ] {
                let fast = Rate::new(r).times(t);
                assert!(same(fast, slow(t, r)), "{t} × {text}: {fast:?}");
            }
        }
    }
}
