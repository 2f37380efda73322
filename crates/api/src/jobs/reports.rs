//! Weekly report e-mails: sending them over SMTP (lettre), the scheduler
//! that runs inside the server, and `charlie-stats reports send`. What a
//! report holds and how it renders is `crate::service::reports`.
//!
//! Weeks are ISO weeks (Monday to Sunday) in `REPORT_TIMEZONE`. At
//! `REPORT_WEEKDAY` `REPORT_HOUR` (local: the day's start plus that many
//! hours), the previous week becomes due; the scheduler runs a due week
//! until every delivery is settled, then records the run. Instances share
//! the work through the delivery records (`charlie_store::reports`): any
//! number may run the same week, each user is claimed by one of them, and
//! a report is sent at most once.

use super::settings::ReportSettings;
use crate::service::reports::{
    due_week, email as report_email, email::RenderedReport, parse_week, report_data, week_buckets,
    week_label,
};
use charlie_store::{Store, StoreError, calendar::Zone};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use std::time::Duration;
use time::{Date, OffsetDateTime};
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

impl From<crate::service::ServiceError> for ReportError {
    fn from(e: crate::service::ServiceError) -> Self {
        ReportError(e.to_string())
    }
}

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
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
) -> Result<(), crate::error::CliError> {
    let ReportsAction::Send {
        week,
        dry_run: dry,
        database_url,
    } = action;
    let settings = settings.with_database_url(database_url)?;
    let store = Store::connect(settings.database_url.expose())
        .await
        .map_err(|e| crate::error::CliError(format!("cannot open the database: {e}")))?;
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
        return Err(crate::error::CliError(format!(
            "{} report(s) could not be sent; run the command again to retry those not failed for good",
            s.failed + s.retry_later
        )));
    }
    Ok(())
}
