//! Weekly reports against a real SMTP server written here (a sink that
//! speaks enough SMTP for lettre: EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT):
//! the in-server scheduler, `charlie-stats reports send` resuming a
//! half-done week, and the admin preview.

use crate::helpers::{TestApp, Vars, json, spawn_app_with, token};
use charlie_api::{Application, Settings};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};
use time::{Date, OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

/// One e-mail as the sink received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The DATA section, dot-unstuffed.
    pub data: String,
}

impl Mail {
    /// A header's value (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self
            .data
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .replace("\r\n ", " ")
            .replace("\r\n\t", " ");
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// The whole message with quoted-printable soft breaks and escapes decoded.
    pub fn decoded(&self) -> String {
        let joined = self.data.replace("=\r\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'='
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// An SMTP server on a random port that keeps every message.
pub struct SmtpSink {
    pub url: String,
    pub mails: Arc<Mutex<Vec<Mail>>>,
}

fn serve_smtp(stream: std::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) -> std::io::Result<()> {
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 sink.test ESMTP ready\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-sink.test\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n")?;
        } else if upper.starts_with("HELO") {
            w.write_all(b"250 sink.test\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = line.trim_end()[10..].trim().to_owned();
            to.clear();
            w.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(line.trim_end()[8..].trim().to_owned());
            w.write_all(b"250 OK\r\n")?;
        } else if upper == "DATA" {
            w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                data.push_str(
                    l.strip_prefix('.')
                        .filter(|_| l.starts_with(".."))
                        .unwrap_or(&l),
                );
            }
            mails.lock().unwrap().push(Mail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            w.write_all(b"250 OK queued\r\n")?;
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 OK\r\n")?;
        } else if upper == "QUIT" {
            w.write_all(b"221 Bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"502 Command not implemented\r\n")?;
        }
    }
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("smtp://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let mails = Arc::new(Mutex::new(Vec::new()));
        let m = mails.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let m = m.clone();
                std::thread::spawn(move || serve_smtp(stream, m));
            }
        });
        SmtpSink { url, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, n: usize) {
        for _ in 0..300 {
            if self.mails().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {n} mails: {:#?}", self.mails());
    }
}

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn at(day: Date, hour: u8) -> OffsetDateTime {
    day.with_hms(hour, 0, 0).unwrap().assume_utc()
}

pub fn monday_of(d: Date) -> Date {
    d - time::Duration::days(i64::from(d.weekday().number_days_from_monday()))
}

fn week_label(monday: Date) -> String {
    let (y, w, _) = monday.to_iso_week_date();
    format!("{y:04}-W{w:02}")
}

async fn ingest_ok(app: &TestApp, key: &str, items: &[Value]) {
    let resp = app.ingest_with(key, items).await;
    assert_eq!(resp.status(), 207);
    let body = json(resp).await;
    assert_eq!(body["errors"], 0, "{body:#}");
}

/// A user with a workflow and a conversation; returns (user, conversation).
async fn active_user(
    app: &TestApp,
    key: &str,
    name: &str,
    opt_out: bool,
    created: OffsetDateTime,
) -> (Uuid, Uuid) {
    let (u, wf, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    ingest_ok(
        app,
        key,
        &[
            json!({"id": u, "type": "user.upsert", "timestamp": rfc(created),
                   "body": {"external_id": name, "email": format!("{name}@example.com"), "weekly_report_opt_out": opt_out}}),
            json!({"id": wf, "type": "workflow.upsert", "timestamp": rfc(created), "body": {"user_id": u, "name": "Tutor <Pro>"}}),
            json!({"id": c, "type": "conversation.upsert", "timestamp": rfc(created),
                   "body": {"user_id": u, "workflow_id": wf, "langflow_session_id": format!("s-{c}")}}),
        ],
    )
    .await;
    (u, c)
}

/// `n` gpt-4o messages of 40,000 input tokens ($0.10 each) at `t`.
async fn messages(app: &TestApp, key: &str, conversation: Uuid, n: usize, t: OffsetDateTime) {
    let items: Vec<Value> = (0..n)
        .map(|_| {
            json!({"id": Uuid::now_v7(), "type": "message.create", "timestamp": rfc(t), "body": {
                "conversation_id": conversation, "role": "assistant", "model": "gpt-4o",
                "usage": {"input_tokens": 40_000, "output_tokens": 0}}})
        })
        .collect();
    ingest_ok(app, key, &items).await;
}

fn report_env(sink: &SmtpSink) -> Vec<(&'static str, String)> {
    vec![
        ("SMTP_URL", sink.url.clone()),
        ("REPORT_FROM", "Charlie Stats <stats@example.com>".into()),
        ("REPORT_TIMEZONE", "UTC".into()),
    ]
}

#[tokio::test]
async fn the_scheduler_sends_each_active_user_one_report_over_smtp() {
    let sink = SmtpSink::start();
    let app = spawn_app_with(Vars::new()).await;
    let key = app.api_key().await;
    let today = OffsetDateTime::now_utc().date();
    let last_monday = monday_of(today) - time::Duration::days(7);
    let created = at(last_monday - time::Duration::days(14), 9);
    let (ada, ada_c) = active_user(&app, &key, "ada_report", false, created).await;
    let (_, bob_c) = active_user(&app, &key, "bob_optout", true, created).await;
    let (_, cy_c) = active_user(&app, &key, "cy_quiet", false, created).await;
    // Ada: 2 messages the week before, 5 last week (Tuesday 3, Thursday 2).
    messages(
        &app,
        &key,
        ada_c,
        2,
        at(last_monday - time::Duration::days(3), 10),
    )
    .await;
    messages(
        &app,
        &key,
        ada_c,
        3,
        at(last_monday + time::Duration::days(1), 10),
    )
    .await;
    messages(
        &app,
        &key,
        ada_c,
        2,
        at(last_monday + time::Duration::days(3), 15),
    )
    .await;
    // Bob opted out; Cy had nothing last week.
    messages(
        &app,
        &key,
        bob_c,
        4,
        at(last_monday + time::Duration::days(2), 10),
    )
    .await;
    messages(
        &app,
        &key,
        cy_c,
        1,
        at(last_monday - time::Duration::days(4), 10),
    )
    .await;

    // A second instance on the same database, with the scheduler due now
    // (today's weekday, hour 0), checking every second.
    let weekday = today.weekday().to_string();
    let db_url = app._db.url().to_owned();
    let mut env: HashMap<&str, String> = report_env(&sink).into_iter().collect();
    env.extend([
        ("DATABASE_URL", db_url),
        ("REPORTS_ENABLED", "true".into()),
        ("REPORT_WEEKDAY", weekday),
        ("REPORT_HOUR", "0".into()),
        ("REPORT_CHECK_INTERVAL_SECONDS", "1".into()),
    ]);
    let env: HashMap<&str, &str> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let settings = Settings::from_env(&env).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let reporting = Application::with_store(settings, app.store.clone(), listener).unwrap();
    tokio::spawn(reporting.run_until_stopped());

    sink.wait_for(1).await;
    // Several more checks: nothing is sent twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    assert_eq!(mail.from, "<stats@example.com>");
    assert_eq!(mail.to, vec!["<ada_report@example.com>".to_owned()]);
    let sunday = last_monday + time::Duration::days(6);
    assert_eq!(
        mail.header("Subject"),
        Some(format!("Your Charlie Stats for {last_monday} to {sunday}"))
    );
    assert!(mail.header("From").unwrap().contains("stats@example.com"));
    assert_eq!(mail.header("To").as_deref(), Some("ada_report@example.com"));
    let week = week_label(last_monday);
    let message_id = mail.header("Message-ID").unwrap();
    assert!(
        message_id.contains(&week) && message_id.contains(&ada.to_string()),
        "{message_id}"
    );
    assert!(
        mail.header("Content-Type")
            .unwrap()
            .starts_with("multipart/alternative")
    );
    let body = mail.decoded();
    assert!(body.contains("Content-Type: text/plain"), "{body}");
    assert!(body.contains("Content-Type: text/html"), "{body}");
    for needle in [
        "Messages:       5 (+150% vs the week before)",
        "Conversations:  0 (no change vs the week before)",
        "Most active:    Tutor <Pro> (5 messages)",
        "Tokens:         200,000 (200,000 in, 0 out)",
        "Estimated cost: $0.50",
    ] {
        assert!(body.contains(needle), "{needle} not in:\n{body}");
    }
    assert!(body.contains("Tutor &lt;Pro&gt;"));
    assert!(body.contains("bgcolor=\"#4f46e5\""));
    assert!(!body.to_lowercase().contains("<script"));

    let counts = app.store.report_delivery_counts(&week).await.unwrap();
    assert_eq!((counts.sent, counts.pending, counts.sending), (1, 0, 0));
    assert!(app.store.report_run_completed(&week).await.unwrap());
}

fn charlie_stats() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_charlie-stats"));
    cmd.current_dir(std::env::temp_dir());
    for var in [
        "DATABASE_URL",
        "APP_ENV",
        "BIND_ADDR",
        "TEST_DATABASE_URL",
        "REPORTS_ENABLED",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[tokio::test]
async fn reports_send_resumes_a_half_done_week_and_never_sends_twice() {
    let sink = SmtpSink::start();
    let app = spawn_app_with(Vars::new()).await;
    let key = app.api_key().await;
    let monday = monday_of(OffsetDateTime::now_utc().date()) - time::Duration::days(21);
    let week = week_label(monday);
    let created = at(monday - time::Duration::days(7), 9);
    let mut users = Vec::new();
    for name in ["r_one", "r_two", "r_three"] {
        let (u, c) = active_user(&app, &key, name, false, created).await;
        messages(&app, &key, c, 1, at(monday + time::Duration::days(2), 12)).await;
        users.push(u);
    }
    users.sort();
    let db_url = app._db.url().to_owned();
    let env = report_env(&sink);

    // A dry run lists all three and sends nothing.
    let out = charlie_stats()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args([
            "reports",
            "send",
            "--week",
            &week,
            "--dry-run",
            "--database-url",
            &db_url,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 report(s) would be sent"), "{stdout}");
    assert!(stdout.contains("--- to: r_two@example.com"), "{stdout}");
    assert!(sink.mails().is_empty());

    // An earlier run died half-way: it had sent one report and was sending
    // another when it was killed.
    app.store
        .ensure_report_deliveries(&week, &users, 0)
        .await
        .unwrap();
    let claimed = app
        .store
        .claim_report_deliveries(&week, 1, 0)
        .await
        .unwrap();
    assert_eq!(claimed, vec![users[0]]);
    app.store
        .finish_report_delivery(users[1], &week, "sent", None, 0)
        .await
        .unwrap();

    let send = || {
        charlie_stats()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .args([
                "reports",
                "send",
                "--week",
                &week,
                "--database-url",
                &db_url,
            ])
            .output()
            .unwrap()
    };
    let out = send();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 recipient(s); sent 1,"), "{stdout}");
    assert!(stdout.contains("1 in doubt"), "{stdout}");
    let mails = sink.mails();
    assert_eq!(
        mails.len(),
        1,
        "only the report never attempted is sent: {mails:#?}"
    );
    let third = app
        .store
        .budget_profile(users[2])
        .await
        .unwrap()
        .unwrap()
        .email
        .unwrap();
    assert_eq!(mails[0].to, vec![format!("<{third}>")]);

    // Again: nothing left to send.
    let out = send();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent 0,"));
    assert_eq!(sink.mails().len(), 1);
    assert!(app.store.report_run_completed(&week).await.unwrap());

    // A bad week is refused by the command line.
    let out = charlie_stats()
        .args([
            "reports",
            "send",
            "--week",
            "2026-W60",
            "--database-url",
            &db_url,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ISO week"));
}

#[tokio::test]
async fn admins_preview_any_users_report() {
    let app = spawn_app_with(Vars::new()).await;
    let key = app.api_key().await;
    let monday = monday_of(OffsetDateTime::now_utc().date()) - time::Duration::days(14);
    let (u, c) = active_user(
        &app,
        &key,
        "preview_user",
        true,
        at(monday - time::Duration::days(7), 9),
    )
    .await;
    messages(&app, &key, c, 4, at(monday + time::Duration::days(4), 12)).await;
    let week = week_label(monday);
    let admin = token("preview_admin", true);
    let get = |path: String, tok: String| {
        let client = app.client.clone();
        let url = app.url(&path);
        async move { client.get(url).bearer_auth(tok).send().await.unwrap() }
    };
    let resp = get(
        format!("/api/v1/analytics/admin/reports/preview?user_id={u}&week={week}"),
        admin.clone(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains(&format!("Week {week}"))
            && html.contains("Tutor &lt;Pro&gt;")
            && html.contains("$0.40"),
        "{html}"
    );
    let resp = get(
        format!("/api/v1/analytics/admin/reports/preview?user_id={u}&week={week}&format=text"),
        admin.clone(),
    )
    .await;
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Messages:       4 (none the week before)")
    );
    for (path, status) in [
        (
            format!("/api/v1/analytics/admin/reports/preview?user_id={u}&week=2026-13"),
            400,
        ),
        (
            format!("/api/v1/analytics/admin/reports/preview?week={week}"),
            400,
        ),
        (
            format!(
                "/api/v1/analytics/admin/reports/preview?user_id={}",
                Uuid::now_v7()
            ),
            404,
        ),
    ] {
        assert_eq!(
            get(path.clone(), admin.clone()).await.status(),
            status,
            "{path}"
        );
    }
    let resp = get(
        format!("/api/v1/analytics/admin/reports/preview?user_id={u}"),
        token("preview_user", false),
    )
    .await;
    assert_eq!(resp.status(), 403);
}
