//! Weekly report e-mails: building a user's report for an ISO week, sending
//! it over SMTP (lettre), the scheduler that runs inside the server, and
//! `charlie-stats reports send`.
//!
//! Weeks are ISO weeks (Monday to Sunday) in `REPORT_TIMEZONE`. At
//! `REPORT_WEEKDAY` `REPORT_HOUR` (local: the day's start plus that many
//! hours), the previous week becomes due; the scheduler runs a due week
//! until every delivery is settled, then records the run. Instances share
//! the work through the delivery records (`charlie_store::reports`): any
//! number may run the same week, each user is claimed by one of them, and
//! a report is sent at most once.

use super::{
    report_email::{self, RenderedReport, ReportData, ReportDay},
    settings::ReportSettings,
};
use charlie_store::{Store, StoreError, calendar::Zone};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use std::time::Duration;
use time::{Date, OffsetDateTime, Weekday};
use uuid::Uuid;

/// How many times one user's report is tried before it is marked failed.
const MAX_ATTEMPTS: u32 = 3;

/// A report job failure, phrased for people.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReportError(pub String);

impl From<StoreError> for ReportError {
    fn from(e: StoreError) -> Self {
        ReportError(e.to_string())
    }
}

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// `YYYY-Www` of the ISO week that holds `monday`.
pub fn week_label(monday: Date) -> String {
    let (year, week, _) = monday.to_iso_week_date();
    format!("{year:04}-W{week:02}")
}

/// The Monday of ISO week `YYYY-Www`.
pub fn parse_week(s: &str) -> Result<Date, String> {
    let bad = || format!("`{s}` is not an ISO week such as 2026-W05");
    let (year, week) = s.trim().split_once("-W").ok_or_else(bad)?;
    if year.len() != 4 || week.len() != 2 {
        return Err(bad());
    }
    let year: i32 = year.parse().map_err(|_| bad())?;
    let week: u8 = week.parse().map_err(|_| bad())?;
    Date::from_iso_week_date(year, week, Weekday::Monday).map_err(|_| bad())
}

fn monday_of(d: Date) -> Date {
    d - time::Duration::days(i64::from(d.weekday().number_days_from_monday()))
}

/// The Monday of the last complete week at `now` in `zone`.
pub fn last_complete_week(zone: &Zone, now: OffsetDateTime) -> Date {
    monday_of(zone.date_of(now)) - time::Duration::days(7)
}

/// The Monday of the week due at `now`: the previous week once this week's
/// `weekday` `hour` has passed, else the one before it (so a server that was
/// down at the scheduled time catches up).
pub fn due_week(zone: &Zone, now: OffsetDateTime, weekday: Weekday, hour: u8) -> Option<Date> {
    let this_monday = monday_of(zone.date_of(now));
    let scheduled_day =
        this_monday + time::Duration::days(i64::from(weekday.number_days_from_monday()));
    let scheduled = zone.start_of(scheduled_day)? + i64::from(hour) * 3600;
    let weeks_back = if now.unix_timestamp() >= scheduled {
        7
    } else {
        14
    };
    Some(this_monday - time::Duration::days(weeks_back))
}

/// The figures of `user_id`'s week starting `monday`, in `zone`.
pub async fn report_data(
    store: &Store,
    user_id: Uuid,
    monday: Date,
    zone: &Zone,
) -> Result<ReportData, ReportError> {
    let previous = monday - time::Duration::days(7);
    let days = (0..14)
        .map(|i| zone.day(previous + time::Duration::days(i)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ReportError("the week is outside the calendar".into()))?;
    // Fourteen days; the top workflow over the last seven (this week).
    let dash = store.user_dashboard(user_id, &days, 7).await?;
    let usage = dash.usage;
    let this = usage.total_last(7);
    let mut before = charlie_store::rollup::Counters::default();
    for d in &usage.days[..7.min(usage.days.len())] {
        before.add(&d.counters);
    }
    let top_workflow = dash.top_workflow.map(|w| (w.name, w.message_count));
    Ok(ReportData {
        week: week_label(monday),
        first_day: monday,
        last_day: monday + time::Duration::days(6),
        timezone: zone.name().to_owned(),
        messages: this.message_count,
        previous_messages: before.message_count,
        conversations: this.conversations_started,
        previous_conversations: before.conversations_started,
        top_workflow,
        input_tokens: this.input_tokens,
        output_tokens: this.output_tokens,
        cost_nano_usd: this.cost_nano_usd,
        unpriced_messages: this.unpriced_message_count,
        days: usage
            .last(7)
            .iter()
            .map(|d| ReportDay {
                date: d.date,
                messages: d.counters.message_count,
            })
            .collect(),
    })
}

/// Sends report e-mails over SMTP.
#[derive(Debug, Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(settings: &ReportSettings) -> Result<Mailer, ReportError> {
        let url = settings
            .smtp_url
            .as_ref()
            .ok_or_else(|| ReportError("SMTP_URL is not set".into()))?;
        let from = settings
            .from
            .as_deref()
            .ok_or_else(|| ReportError("REPORT_FROM is not set".into()))?
            .parse::<Mailbox>()
            .map_err(|e| ReportError(format!("REPORT_FROM: {e}")))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|e| ReportError(format!("SMTP_URL: {e}")))?
            .timeout(Some(Duration::from_secs(30)))
            .build();
        Ok(Mailer { transport, from })
    }

    /// Sends one report; the Message-ID is stable per user × week, so a
    /// mail system that sees it twice can tell.
    pub async fn send(
        &self,
        to: &str,
        user_id: Uuid,
        week: &str,
        r: &RenderedReport,
    ) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("recipient `{to}`: {e}"))?;
        let domain = self.from.email.domain().to_owned();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(r.subject.clone())
            .message_id(Some(format!("<weekly-report.{week}.{user_id}@{domain}>")))
            .multipart(MultiPart::alternative_plain_html(
                r.text.clone(),
                r.html.clone(),
            ))
            .map_err(|e| format!("cannot build the message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub week: String,
    /// Users with activity who have not opted out (all of them, this run's or not).
    pub recipients: usize,
    /// Sent by this run.
    pub sent: usize,
    /// Given up by this run.
    pub failed: usize,
    /// Put back for a later attempt by this run.
    pub retry_later: usize,
    /// Skipped by this run (opted out or no address since the list was made).
    pub skipped: usize,
    /// Deliveries of the week whose process died during the send: never resent.
    pub in_doubt: i64,
    /// Whether every delivery of the week is settled.
    pub complete: bool,
}

/// Who would get week `monday`'s report, with the rendered e-mail (nothing is sent or recorded).
pub async fn dry_run(
    store: &Store,
    settings: &ReportSettings,
    monday: Date,
) -> Result<Vec<(String, RenderedReport)>, ReportError> {
    let zone = Zone::get(&settings.timezone).map_err(|e| ReportError(e.to_string()))?;
    let (first, end) = week_buckets(&zone, monday)?;
    let mut out = Vec::new();
    for r in store.report_recipients(first, end).await? {
        let data = report_data(store, r.user_id, monday, &zone).await?;
        out.push((r.email, report_email::render(&data)));
    }
    Ok(out)
}

fn week_buckets(zone: &Zone, monday: Date) -> Result<(i64, i64), ReportError> {
    let first = zone.day(monday);
    let last = zone.day(monday + time::Duration::days(6));
    match (first, last) {
        (Some(f), Some(l)) => Ok((f.first_bucket, l.end_bucket)),
        _ => Err(ReportError("the week is outside the calendar".into())),
    }
}

/// Sends week `monday`'s reports that are due, resuming any earlier run.
pub async fn run_week(
    store: &Store,
    settings: &ReportSettings,
    mailer: &Mailer,
    monday: Date,
) -> Result<RunSummary, ReportError> {
    let zone = Zone::get(&settings.timezone).map_err(|e| ReportError(e.to_string()))?;
    let week = week_label(monday);
    let (first, end) = week_buckets(&zone, monday)?;
    let recipients = store.report_recipients(first, end).await?;
    let ids: Vec<Uuid> = recipients.iter().map(|r| r.user_id).collect();
    store
        .ensure_report_deliveries(&week, &ids, now_ms())
        .await?;
    let mut summary = RunSummary {
        week: week.clone(),
        recipients: recipients.len(),
        ..RunSummary::default()
    };
    loop {
        let claimed = store.claim_report_deliveries(&week, 10, now_ms()).await?;
        if claimed.is_empty() {
            break;
        }
        for user_id in claimed {
            let profile = store.budget_profile(user_id).await?;
            let email = profile
                .filter(|p| !p.weekly_report_opt_out)
                .and_then(|p| p.email)
                .filter(|e| !e.trim().is_empty());
            let Some(email) = email else {
                store
                    .finish_report_delivery(user_id, &week, "skipped", None, now_ms())
                    .await?;
                summary.skipped += 1;
                continue;
            };
            let data = report_data(store, user_id, monday, &zone).await?;
            let rendered = report_email::render(&data);
            match mailer.send(&email, user_id, &week, &rendered).await {
                Ok(()) => {
                    store
                        .finish_report_delivery(user_id, &week, "sent", None, now_ms())
                        .await?;
                    tracing::info!(%user_id, %week, "weekly report sent");
                    summary.sent += 1;
                }
                Err(error) => {
                    let attempts = attempts_of(store, &week, user_id).await;
                    if attempts >= MAX_ATTEMPTS {
                        store
                            .finish_report_delivery(
                                user_id,
                                &week,
                                "failed",
                                Some(&error),
                                now_ms(),
                            )
                            .await?;
                        tracing::warn!(%user_id, %week, %error, "weekly report failed; giving up");
                        summary.failed += 1;
                    } else {
                        let delay = 60_000i64 << attempts.min(10);
                        store
                            .retry_report_delivery(
                                user_id,
                                &week,
                                &error,
                                now_ms().saturating_add(delay),
                                now_ms(),
                            )
                            .await?;
                        tracing::warn!(%user_id, %week, %error, "weekly report not sent; will retry");
                        summary.retry_later += 1;
                    }
                }
            }
        }
    }
    let counts = store.report_delivery_counts(&week).await?;
    summary.in_doubt = counts.sending;
    summary.complete = counts.pending == 0;
    Ok(summary)
}

async fn attempts_of(store: &Store, week: &str, user_id: Uuid) -> u32 {
    store
        .report_delivery_attempts(user_id, week)
        .await
        .ok()
        .flatten()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(MAX_ATTEMPTS)
}

/// The scheduler (spawned by the server when `REPORTS_ENABLED` is true).
pub async fn scheduler(store: Store, settings: ReportSettings) {
    let (zone, mailer) = match (Zone::get(&settings.timezone), Mailer::new(&settings)) {
        (Ok(z), Ok(m)) => (z, m),
        (Err(e), _) => return tracing::error!(error = %e, "report scheduler not started"),
        (_, Err(e)) => return tracing::error!(error = %e, "report scheduler not started"),
    };
    let pause = Duration::from_secs(settings.check_interval_seconds);
    loop {
        if let Some(monday) = due_week(
            &zone,
            OffsetDateTime::now_utc(),
            settings.weekday,
            settings.hour,
        ) {
            let week = week_label(monday);
            match store.report_run_completed(&week).await {
                Ok(true) => {}
                Ok(false) => match run_week(&store, &settings, &mailer, monday).await {
                    Ok(s) => {
                        tracing::info!(week = %s.week, sent = s.sent, failed = s.failed, retry_later = s.retry_later, "weekly reports run");
                        if s.complete
                            && let Err(e) = store.complete_report_run(&week, now_ms()).await
                        {
                            tracing::warn!(error = %e, "cannot record the report run");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, %week, "weekly reports run failed; will retry")
                    }
                },
                Err(e) => tracing::warn!(error = %e, "report scheduler: database error"),
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// `charlie-stats reports …`.
#[derive(Debug, clap::Subcommand)]
pub enum ReportsAction {
    /// Send the weekly reports of an ISO week (in REPORT_TIMEZONE) now, to
    /// every user with activity that week who has not opted out and has not
    /// had it yet. Uses SMTP_URL and REPORT_FROM.
    Send {
        /// The ISO week, such as 2026-W05.
        #[arg(long, value_parser = parse_week)]
        week: Date,
        /// Print who would get which e-mail (subject and text) and send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Database URL (postgres://… or sqlite:…); overrides DATABASE_URL.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
}

/// Runs `charlie-stats reports …`.
pub async fn command(
    action: ReportsAction,
    settings: crate::Settings,
) -> Result<(), crate::cli::CliError> {
    let ReportsAction::Send {
        week,
        dry_run: dry,
        database_url,
    } = action;
    let settings = settings.with_database_url(database_url)?;
    let store = Store::connect(settings.database_url.expose())
        .await
        .map_err(|e| crate::cli::CliError(format!("cannot open the database: {e}")))?;
    let reports = &settings.notify.reports;
    if dry {
        let list = dry_run(&store, reports, week).await?;
        for (to, r) in &list {
            println!("--- to: {to}\nsubject: {}\n\n{}", r.subject, r.text);
        }
        println!(
            "{}: {} report(s) would be sent (dry run: nothing sent or recorded)",
            week_label(week),
            list.len()
        );
        return Ok(());
    }
    store.migrate_up().await?;
    let mailer = Mailer::new(reports)?;
    let s = run_week(&store, reports, &mailer, week).await?;
    if s.complete {
        store.complete_report_run(&s.week, now_ms()).await?;
    }
    println!(
        "{}: {} recipient(s); sent {}, failed {}, to retry {}, skipped {}; {} in doubt (never resent)",
        s.week, s.recipients, s.sent, s.failed, s.retry_later, s.skipped, s.in_doubt
    );
    if s.failed > 0 || s.retry_later > 0 {
        return Err(crate::cli::CliError(format!(
            "{} report(s) could not be sent; run the command again to retry those not failed for good",
            s.failed + s.retry_later
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn iso_weeks_parse_and_print() {
        assert_eq!(parse_week("2026-W02"), Ok(date!(2026 - 01 - 05)));
        assert_eq!(parse_week("2027-W01"), Ok(date!(2027 - 01 - 04)));
        assert_eq!(week_label(date!(2024 - 12 - 30)), "2025-W01");
        for bad in ["2026-W54", "2026W02", "2026-02", "26-W02", "2026-W2"] {
            assert!(parse_week(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_previous_week_is_due_once_the_scheduled_hour_has_passed() {
        let utc = Zone::utc();
        // Wednesday 2026-01-14; reports on Mondays at 08:00.
        let now = datetime!(2026-01-14 12:00 UTC);
        assert_eq!(
            due_week(&utc, now, Weekday::Monday, 8),
            Some(date!(2026 - 01 - 05))
        );
        // Reports on Fridays: last week's is not due yet, the one before is.
        assert_eq!(
            due_week(&utc, now, Weekday::Friday, 8),
            Some(date!(2025 - 12 - 29))
        );
        // Monday 07:59 vs 08:00.
        assert_eq!(
            due_week(&utc, datetime!(2026-01-12 07:59 UTC), Weekday::Monday, 8),
            Some(date!(2025 - 12 - 29))
        );
        assert_eq!(
            due_week(&utc, datetime!(2026-01-12 08:00 UTC), Weekday::Monday, 8),
            Some(date!(2026 - 01 - 05))
        );
        // In Tokyo, Sunday 23:30 UTC is already Monday 08:30.
        let tokyo = Zone::get("Asia/Tokyo").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            due_week(&tokyo, datetime!(2026-01-11 23:30 UTC), Weekday::Monday, 8),
            Some(date!(2026 - 01 - 05))
        );
        assert_eq!(last_complete_week(&utc, now), date!(2026 - 01 - 05));
    }
}
