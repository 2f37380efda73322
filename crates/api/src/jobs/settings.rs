//! The variables of budgets, alerts, the webhook and weekly reports, read by
//! `Settings::from_env` (through [`NotifySettings::from_env`]).

use crate::config::env::{ConfigError, Env, Secret, parse_bool, parse_var};
use charlie_domain::Usd;
use time::Weekday;

/// Where alerts go (`ALERT_WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// `ALERT_WEBHOOK_URL`.
    pub url: String,
    /// `ALERT_WEBHOOK_SECRET`: the HMAC-SHA256 key of `X-Charlie-Signature`.
    pub secret: Secret,
    /// `ALERT_WEBHOOK_TIMEOUT_SECONDS` (default 10).
    pub timeout_seconds: u64,
    /// `ALERT_WEBHOOK_RETRY_BASE_MS` (default 5000): the first retry's
    /// delay; each next one doubles, up to one hour.
    pub retry_base_ms: u64,
    /// `ALERT_WEBHOOK_MAX_ATTEMPTS` (default 12): then the delivery is
    /// marked failed.
    pub max_attempts: u32,
    /// `OUTBOX_POLL_INTERVAL_MS` (default 1000): how often the worker looks
    /// for due messages.
    pub poll_interval_ms: u64,
}

/// The weekly report (`REPORT*`, `SMTP_URL`).
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// `REPORTS_ENABLED` (default false): runs the scheduler in the server.
    pub enabled: bool,
    /// `REPORT_WEEKDAY` (default monday) and `REPORT_HOUR` (0–23, default 8):
    /// when the previous ISO week's reports go out.
    pub weekday: Weekday,
    pub hour: u8,
    /// `REPORT_TIMEZONE` (IANA, default UTC): of the weekday, the hour and
    /// the weeks' days.
    pub timezone: String,
    /// `SMTP_URL`: lettre's connection URL (`smtp://host:port`,
    /// `smtp://user:pass@host:587?tls=required`, `smtps://user:pass@host`).
    pub smtp_url: Option<Secret>,
    /// `REPORT_FROM`: the sender (`Charlie Stats <stats@example.com>`).
    pub from: Option<String>,
    /// `REPORT_CHECK_INTERVAL_SECONDS` (default 60): how often the scheduler
    /// checks whether a week is due.
    pub check_interval_seconds: u64,
}

/// Budgets, alerts, webhook and reports.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// `DEFAULT_MONTHLY_BUDGET_USD`: the budget of users without their own.
    pub default_monthly_budget_nano_usd: Option<i64>,
    /// `ALERT_THRESHOLDS_PERCENT` (default `80,100`), ascending.
    pub alert_thresholds_percent: Vec<u32>,
    pub webhook: Option<WebhookSettings>,
    pub reports: ReportSettings,
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "monday" | "mon" | "1" => Weekday::Monday,
        "tuesday" | "tue" | "2" => Weekday::Tuesday,
        "wednesday" | "wed" | "3" => Weekday::Wednesday,
        "thursday" | "thu" | "4" => Weekday::Thursday,
        "friday" | "fri" | "5" => Weekday::Friday,
        "saturday" | "sat" | "6" => Weekday::Saturday,
        "sunday" | "sun" | "7" => Weekday::Sunday,
        _ => return None,
    })
}

/// Checks an SMTP URL the way the mailer will read it.
pub fn check_smtp_url(url: &str) -> Result<(), String> {
    lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
        .map(|_| ())
        .map_err(|e| {
            format!("not an SMTP URL such as smtp://host:2525 or smtps://user:pass@host: {e}")
        })
}

impl NotifySettings {
    pub fn from_env(env: &dyn Env) -> Result<NotifySettings, ConfigError> {
        let default_monthly_budget_nano_usd = match env.get("DEFAULT_MONTHLY_BUDGET_USD") {
            None => None,
            Some(raw) => {
                let var = "DEFAULT_MONTHLY_BUDGET_USD";
                let usd: Usd = raw
                    .trim()
                    .parse()
                    .map_err(|e| ConfigError::new(var, format!("`{}`: {e}", raw.trim())))?;
                let nanos = usd
                    .to_nanos()
                    .map_err(|e| ConfigError::new(var, e.to_string()))?;
                if nanos <= 0 {
                    return Err(ConfigError::new(
                        var,
                        "must be more than 0 (unset it for no budget)",
                    ));
                }
                Some(nanos)
            }
        };
        let alert_thresholds_percent = match env.get("ALERT_THRESHOLDS_PERCENT") {
            None => vec![80, 100],
            Some(raw) => {
                let var = "ALERT_THRESHOLDS_PERCENT";
                let mut list = Vec::new();
                for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let t: u32 = item
                        .parse()
                        .ok()
                        .filter(|t| (1..=1000).contains(t))
                        .ok_or_else(|| {
                            ConfigError::new(
                                var,
                                format!("`{item}` is not a whole percentage from 1 to 1000"),
                            )
                        })?;
                    list.push(t);
                }
                if list.is_empty() {
                    return Err(ConfigError::new(var, "lists no threshold"));
                }
                list.sort_unstable();
                list.dedup();
                list
            }
        };
        let webhook = match env.get("ALERT_WEBHOOK_URL") {
            None => None,
            Some(raw) => {
                let url = raw.trim();
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| ConfigError::new("ALERT_WEBHOOK_URL", format!("`{url}`: {e}")))?;
                if !["http", "https"].contains(&parsed.scheme()) || parsed.host_str().is_none() {
                    return Err(ConfigError::new(
                        "ALERT_WEBHOOK_URL",
                        format!("`{url}` is not an http(s):// URL"),
                    ));
                }
                let secret = env.get("ALERT_WEBHOOK_SECRET").ok_or_else(|| {
                    ConfigError::new(
                        "ALERT_WEBHOOK_SECRET",
                        "must be set when ALERT_WEBHOOK_URL is (receivers verify the signature with it)",
                    )
                })?;
                let max_attempts = parse_var(env, "ALERT_WEBHOOK_MAX_ATTEMPTS", 12u32)?;
                if max_attempts == 0 {
                    return Err(ConfigError::new(
                        "ALERT_WEBHOOK_MAX_ATTEMPTS",
                        "must be at least 1",
                    ));
                }
                Some(WebhookSettings {
                    url: url.to_owned(),
                    secret: Secret::new(secret),
                    timeout_seconds: parse_var(env, "ALERT_WEBHOOK_TIMEOUT_SECONDS", 10u64)?.max(1),
                    retry_base_ms: parse_var(env, "ALERT_WEBHOOK_RETRY_BASE_MS", 5000u64)?.max(1),
                    max_attempts,
                    poll_interval_ms: parse_var(env, "OUTBOX_POLL_INTERVAL_MS", 1000u64)?.max(10),
                })
            }
        };
        let weekday = match env.get("REPORT_WEEKDAY") {
            None => Weekday::Monday,
            Some(raw) => weekday(&raw).ok_or_else(|| {
                ConfigError::new(
                    "REPORT_WEEKDAY",
                    format!("`{}` is not a weekday such as monday", raw.trim()),
                )
            })?,
        };
        let hour = parse_var(env, "REPORT_HOUR", 8u8)?;
        if hour > 23 {
            return Err(ConfigError::new(
                "REPORT_HOUR",
                format!("{hour} is not an hour from 0 to 23"),
            ));
        }
        let timezone = env
            .get("REPORT_TIMEZONE")
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| "UTC".into());
        charlie_store::calendar::Zone::get(&timezone)
            .map_err(|e| ConfigError::new("REPORT_TIMEZONE", e.to_string()))?;
        let smtp_url = env.get("SMTP_URL").map(|v| Secret::new(v.trim()));
        if let Some(url) = &smtp_url {
            check_smtp_url(url.expose()).map_err(|e| ConfigError::new("SMTP_URL", e))?;
        }
        let from = env.get("REPORT_FROM").map(|v| v.trim().to_owned());
        if let Some(from) = &from {
            from.parse::<lettre::message::Mailbox>().map_err(|e| {
                ConfigError::new(
                    "REPORT_FROM",
                    format!(
                        "`{from}` is not an address such as Charlie Stats <stats@example.com>: {e}"
                    ),
                )
            })?;
        }
        let enabled = parse_bool(env, "REPORTS_ENABLED", false)?;
        if enabled && smtp_url.is_none() {
            return Err(ConfigError::new(
                "SMTP_URL",
                "must be set when REPORTS_ENABLED is true",
            ));
        }
        if enabled && from.is_none() {
            return Err(ConfigError::new(
                "REPORT_FROM",
                "must be set when REPORTS_ENABLED is true",
            ));
        }
        Ok(NotifySettings {
            default_monthly_budget_nano_usd,
            alert_thresholds_percent,
            webhook,
            reports: ReportSettings {
                enabled,
                weekday,
                hour,
                timezone,
                smtp_url,
                from,
                check_interval_seconds: parse_var(env, "REPORT_CHECK_INTERVAL_SECONDS", 60u64)?
                    .max(1),
            },
        })
    }

    /// What ingestion applies.
    pub fn budget_policy(&self) -> charlie_store::budgets::BudgetPolicy {
        charlie_store::budgets::BudgetPolicy {
            default_budget_nano_usd: self.default_monthly_budget_nano_usd,
            thresholds_percent: self.alert_thresholds_percent.clone(),
            webhook: self.webhook.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn notify(vars: &[(&'static str, &'static str)]) -> Result<NotifySettings, ConfigError> {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        NotifySettings::from_env(&env)
    }

    #[test]
    fn defaults_are_no_budget_80_and_100_and_no_delivery() {
        let s = notify(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.default_monthly_budget_nano_usd, None);
        assert_eq!(s.alert_thresholds_percent, vec![80, 100]);
        assert!(s.webhook.is_none() && !s.reports.enabled);
        assert_eq!(
            (
                s.reports.weekday,
                s.reports.hour,
                s.reports.timezone.as_str()
            ),
            (Weekday::Monday, 8, "UTC")
        );
    }

    #[test]
    fn values_are_parsed_and_bad_ones_name_their_variable() {
        let s = notify(&[
            ("DEFAULT_MONTHLY_BUDGET_USD", "25.50"),
            ("ALERT_THRESHOLDS_PERCENT", "100, 50,80,50"),
            ("REPORT_WEEKDAY", "Friday"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.default_monthly_budget_nano_usd, Some(25_500_000_000));
        assert_eq!(s.alert_thresholds_percent, vec![50, 80, 100]);
        assert_eq!(s.reports.weekday, Weekday::Friday);
        for (vars, var) in [
            (
                vec![("DEFAULT_MONTHLY_BUDGET_USD", "ten")],
                "DEFAULT_MONTHLY_BUDGET_USD",
            ),
            (
                vec![("DEFAULT_MONTHLY_BUDGET_USD", "0")],
                "DEFAULT_MONTHLY_BUDGET_USD",
            ),
            (
                vec![("ALERT_THRESHOLDS_PERCENT", "80,0")],
                "ALERT_THRESHOLDS_PERCENT",
            ),
            (vec![("ALERT_WEBHOOK_URL", "ftp://x")], "ALERT_WEBHOOK_URL"),
            (
                vec![("ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")],
                "ALERT_WEBHOOK_SECRET",
            ),
            (vec![("REPORT_HOUR", "24")], "REPORT_HOUR"),
            (vec![("REPORT_WEEKDAY", "someday")], "REPORT_WEEKDAY"),
            (vec![("REPORT_TIMEZONE", "Mars/Olympus")], "REPORT_TIMEZONE"),
            (vec![("SMTP_URL", "http://mail")], "SMTP_URL"),
            (vec![("REPORTS_ENABLED", "true")], "SMTP_URL"),
            (
                vec![
                    ("REPORTS_ENABLED", "true"),
                    ("SMTP_URL", "smtp://127.0.0.1:2525"),
                ],
                "REPORT_FROM",
            ),
        ] {
            assert_eq!(notify(&vars).err().map(|e| e.var), Some(var), "{vars:?}");
        }
    }
}
