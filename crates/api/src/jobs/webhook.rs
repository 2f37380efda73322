//! The outbox worker: delivers usage-alert webhooks, signed, with retries.
//!
//! Each request carries the stored JSON body unchanged and two headers:
//! `X-Charlie-Timestamp: <unix seconds>` and `X-Charlie-Signature:
//! sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with
//! ALERT_WEBHOOK_SECRET>`. Any 2xx answer is a delivery; anything else (or no
//! answer) is retried after `ALERT_WEBHOOK_RETRY_BASE_MS × 2^(attempt−1)`,
//! capped at one hour, until `ALERT_WEBHOOK_MAX_ATTEMPTS`.

use super::settings::WebhookSettings;
use charlie_store::{Store, budgets::ALERT_TOPIC, outbox::OutboxMessage};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// How long a claimed message is reserved for the worker that claimed it.
/// Longer than any request (timeout included), so a live worker always
/// finishes first; a dead worker's message is retried once it ends.
fn lease_ms(settings: &WebhookSettings) -> i64 {
    i64::try_from(
        settings
            .timeout_seconds
            .saturating_mul(1000)
            .saturating_add(30_000),
    )
    .unwrap_or(i64::MAX)
}

/// The `X-Charlie-Signature` value of `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before retry number `attempt` (1 = the first retry).
pub fn backoff_ms(base_ms: u64, attempt: u32) -> u64 {
    const MAX_MS: u64 = 3_600_000;
    let factor = 1u64
        .checked_shl(attempt.saturating_sub(1).min(40))
        .unwrap_or(u64::MAX);
    base_ms.saturating_mul(factor).min(MAX_MS)
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// Sends one message; `Err` says why it was not delivered.
async fn send(
    client: &reqwest::Client,
    settings: &WebhookSettings,
    m: &OutboxMessage,
) -> Result<(), String> {
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let resp = client
        .post(&settings.url)
        .header("Content-Type", "application/json")
        .header("X-Charlie-Event-Id", m.event_id.to_string())
        .header("X-Charlie-Timestamp", timestamp.to_string())
        .header(
            "X-Charlie-Signature",
            signature(settings.secret.expose(), timestamp, &m.payload),
        )
        .body(m.payload.clone())
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("receiver answered {status}"))
    }
}

/// Claims and delivers due messages once; returns how many were claimed.
pub async fn drain_once(
    store: &Store,
    client: &reqwest::Client,
    settings: &WebhookSettings,
) -> Result<usize, charlie_store::StoreError> {
    let claimed = store
        .claim_outbox(ALERT_TOPIC, 16, lease_ms(settings), now_ms())
        .await?;
    for m in &claimed {
        match send(client, settings, m).await {
            Ok(()) => {
                tracing::info!(event_id = %m.event_id, attempts = m.attempts, "alert webhook delivered");
                store.outbox_delivered(m.id, now_ms()).await?;
            }
            Err(error) => {
                let attempts = u32::try_from(m.attempts).unwrap_or(u32::MAX);
                let retry_at = (attempts < settings.max_attempts).then(|| {
                    now_ms().saturating_add(
                        i64::try_from(backoff_ms(settings.retry_base_ms, attempts))
                            .unwrap_or(i64::MAX),
                    )
                });
                tracing::warn!(event_id = %m.event_id, attempts, %error, will_retry = retry_at.is_some(), "alert webhook not delivered");
                store
                    .outbox_attempt_failed(m.id, &error, retry_at, now_ms())
                    .await?;
            }
        }
    }
    Ok(claimed.len())
}

/// Runs the worker forever (spawned by the server when `ALERT_WEBHOOK_URL` is set).
pub async fn run(store: Store, settings: WebhookSettings) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(settings.timeout_seconds))
        .user_agent(concat!("charlie-stats/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; alerts will not be delivered");
            return;
        }
    };
    let idle = Duration::from_millis(settings.poll_interval_ms);
    loop {
        match drain_once(&store, &client, &settings).await {
            // A full batch: there may be more due right now.
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "outbox worker: database error; retrying"),
        }
        tokio::time::sleep(idle).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature("secret", 1_700_000_000, "{}"),
            "sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        assert_ne!(signature("secret", 1, "{}"), signature("secret", 2, "{}"));
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff_ms(5000, 1), 5000);
        assert_eq!(backoff_ms(5000, 2), 10_000);
        assert_eq!(backoff_ms(5000, 4), 40_000);
        assert_eq!(backoff_ms(5000, 60), 3_600_000);
    }
}
