//! The weekly report e-mail: the figures of one user's ISO week and their
//! HTML and plain-text renderings. The HTML uses tables and inline styles
//! only (no scripts, no images, no external CSS), so it displays the same in
//! common e-mail clients; the bar chart is a table of cells whose widths are
//! the day's share of the busiest day.

use charlie_domain::Usd;
use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt::Write as _;
use time::Date;

/// One day of the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportDay {
    pub date: Date,
    pub messages: i64,
}

/// Everything one report shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportData {
    /// `YYYY-Www`.
    pub week: String,
    pub first_day: Date,
    pub last_day: Date,
    pub timezone: String,
    pub messages: i64,
    pub previous_messages: i64,
    pub conversations: i64,
    pub previous_conversations: i64,
    /// The workflow with the most messages this week, and its count.
    pub top_workflow: Option<(String, i64)>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_nano_usd: i64,
    /// Messages whose model has no price (not in the cost).
    pub unpriced_messages: i64,
    /// Monday to Sunday.
    pub days: Vec<ReportDay>,
}

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedReport {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// `+25%`, `-10%`, `no change`, or `new` when the week before had none.
pub fn change(current: i64, previous: i64) -> String {
    if previous == 0 {
        return if current == 0 {
            "no change".into()
        } else {
            "new this week".into()
        };
    }
    let pct = (Decimal::from(current - previous) * Decimal::from(100) / Decimal::from(previous))
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    if pct.is_zero() {
        "no change".into()
    } else if pct.is_sign_positive() {
        format!("+{pct}%")
    } else {
        format!("{pct}%")
    }
}

/// How `current` compares with the week before, as a phrase.
pub fn versus(current: i64, previous: i64) -> String {
    if previous == 0 && current > 0 {
        "none the week before".into()
    } else {
        format!("{} vs the week before", change(current, previous))
    }
}

/// Dollars with cents; amounts under a cent show as `< $0.01`.
pub fn dollars(nanos: i64) -> String {
    let usd = Usd::from_nanos(nanos).decimal();
    if usd.is_zero() {
        return "$0.00".into();
    }
    if usd < Decimal::new(1, 2) {
        return "< $0.01".into();
    }
    format!(
        "${:.2}",
        usd.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
    )
}

/// `12,345`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn day_label(d: Date) -> String {
    format!(
        "{} {} {}",
        &d.weekday().to_string()[..3],
        d.day(),
        &d.month().to_string()[..3]
    )
}

/// Renders the e-mail.
pub fn render(r: &ReportData) -> RenderedReport {
    let subject = format!("Your Charlie Stats for {} to {}", r.first_day, r.last_day);
    let tokens = r.input_tokens + r.output_tokens;
    let workflow = r.top_workflow.as_ref().map(|(name, n)| {
        (
            if name.is_empty() {
                "(unnamed)".to_owned()
            } else {
                name.clone()
            },
            *n,
        )
    });
    let max = r.days.iter().map(|d| d.messages).max().unwrap_or(0).max(1);

    // Plain text.
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Your Charlie Stats, week {} ({} to {}, {})",
        r.week, r.first_day, r.last_day, r.timezone
    );
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "Messages:       {} ({})",
        thousands(r.messages),
        versus(r.messages, r.previous_messages)
    );
    let _ = writeln!(
        text,
        "Conversations:  {} ({})",
        thousands(r.conversations),
        versus(r.conversations, r.previous_conversations)
    );
    match &workflow {
        Some((name, n)) => {
            let _ = writeln!(text, "Most active:    {name} ({} messages)", thousands(*n));
        }
        None => {
            let _ = writeln!(text, "Most active:    no workflow this week");
        }
    }
    let _ = writeln!(
        text,
        "Tokens:         {} ({} in, {} out)",
        thousands(tokens),
        thousands(r.input_tokens),
        thousands(r.output_tokens)
    );
    let _ = writeln!(text, "Estimated cost: {}", dollars(r.cost_nano_usd));
    if r.unpriced_messages > 0 {
        let _ = writeln!(
            text,
            "                ({} messages with an unknown price are not included)",
            thousands(r.unpriced_messages)
        );
    }
    let _ = writeln!(text);
    let _ = writeln!(text, "Messages per day:");
    for d in &r.days {
        let width = usize::try_from(d.messages * 30 / max).unwrap_or(0);
        let _ = writeln!(
            text,
            "  {:<11} {:<30} {}",
            day_label(d.date),
            "#".repeat(width),
            d.messages
        );
    }
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "You can stop these e-mails in your Charlie Stats preferences."
    );

    // HTML.
    let cell = "padding:6px 12px;border-bottom:1px solid #e5e7eb;font-size:14px;";
    let mut rows = String::new();
    let mut stat = |label: &str, value: String, note: String| {
        let _ = write!(
            rows,
            "<tr><td style=\"{cell}color:#6b7280;\">{}</td><td style=\"{cell}font-weight:bold;\">{}</td><td style=\"{cell}color:#6b7280;\">{}</td></tr>",
            escape(label),
            escape(&value),
            escape(&note)
        );
    };
    stat(
        "Messages",
        thousands(r.messages),
        versus(r.messages, r.previous_messages),
    );
    stat(
        "Conversations",
        thousands(r.conversations),
        versus(r.conversations, r.previous_conversations),
    );
    match &workflow {
        Some((name, n)) => stat(
            "Most active workflow",
            name.clone(),
            format!("{} messages", thousands(*n)),
        ),
        None => stat("Most active workflow", "none".into(), String::new()),
    }
    stat(
        "Tokens",
        thousands(tokens),
        format!(
            "{} in, {} out",
            thousands(r.input_tokens),
            thousands(r.output_tokens)
        ),
    );
    stat(
        "Estimated cost",
        dollars(r.cost_nano_usd),
        if r.unpriced_messages > 0 {
            format!(
                "{} messages with an unknown price not included",
                thousands(r.unpriced_messages)
            )
        } else {
            String::new()
        },
    );
    let mut chart = String::new();
    for d in &r.days {
        let pct = d.messages * 100 / max;
        let bar = if pct > 0 {
            format!(
                "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr>\
                 <td width=\"{pct}%\" bgcolor=\"#4f46e5\" style=\"background-color:#4f46e5;height:14px;font-size:1px;line-height:14px;\">&nbsp;</td>\
                 <td width=\"{}%\" style=\"font-size:1px;line-height:14px;\">&nbsp;</td></tr></table>",
                100 - pct
            )
        } else {
            "&nbsp;".to_owned()
        };
        let _ = write!(
            chart,
            "<tr><td style=\"padding:3px 8px;font-size:13px;color:#374151;white-space:nowrap;\">{}</td>\
             <td width=\"100%\" style=\"padding:3px 0;\">{bar}</td>\
             <td style=\"padding:3px 8px;font-size:13px;color:#374151;text-align:right;\">{}</td></tr>",
            escape(&day_label(d.date)),
            d.messages
        );
    }
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title></head>\
         <body style=\"margin:0;padding:0;background-color:#f3f4f6;font-family:Arial,Helvetica,sans-serif;\">\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" bgcolor=\"#f3f4f6\"><tr><td align=\"center\" style=\"padding:24px;\">\
         <table role=\"presentation\" width=\"600\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" bgcolor=\"#ffffff\" style=\"background-color:#ffffff;max-width:600px;\">\
         <tr><td style=\"padding:24px 24px 8px;\"><h1 style=\"margin:0;font-size:22px;color:#111827;\">Your Charlie Stats</h1>\
         <p style=\"margin:4px 0 0;font-size:14px;color:#6b7280;\">Week {week}: {first} to {last} ({tz})</p></td></tr>\
         <tr><td style=\"padding:8px 12px;\"><table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\">{rows}</table></td></tr>\
         <tr><td style=\"padding:16px 24px 4px;\"><h2 style=\"margin:0;font-size:16px;color:#111827;\">Messages per day</h2></td></tr>\
         <tr><td style=\"padding:4px 16px 16px;\"><table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\">{chart}</table></td></tr>\
         <tr><td style=\"padding:8px 24px 24px;font-size:12px;color:#9ca3af;\">You can stop these e-mails in your Charlie Stats preferences.</td></tr>\
         </table></td></tr></table></body></html>",
        title = escape(&subject),
        week = escape(&r.week),
        first = r.first_day,
        last = r.last_day,
        tz = escape(&r.timezone),
    );
    RenderedReport {
        subject,
        html,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn sample() -> ReportData {
        let first = date!(2026 - 01 - 05);
        ReportData {
            week: "2026-W02".into(),
            first_day: first,
            last_day: date!(2026 - 01 - 11),
            timezone: "UTC".into(),
            messages: 1234,
            previous_messages: 1000,
            conversations: 10,
            previous_conversations: 20,
            top_workflow: Some(("Tutor <b>&".into(), 800)),
            input_tokens: 1_000_000,
            output_tokens: 250_000,
            cost_nano_usd: 3_456_000_000,
            unpriced_messages: 0,
            days: (0..7)
                .map(|i| ReportDay {
                    date: first + time::Duration::days(i),
                    messages: [0, 100, 200, 400, 300, 200, 34][i as usize],
                })
                .collect(),
        }
    }

    #[test]
    fn figures_are_formatted_for_people() {
        assert_eq!(change(1234, 1000), "+23%");
        assert_eq!(change(10, 20), "-50%");
        assert_eq!(change(5, 5), "no change");
        assert_eq!(change(5, 0), "new this week");
        assert_eq!(versus(5, 0), "none the week before");
        assert_eq!(versus(0, 0), "no change vs the week before");
        assert_eq!(versus(6, 4), "+50% vs the week before");
        assert_eq!(dollars(3_456_000_000), "$3.46");
        assert_eq!(dollars(1), "< $0.01");
        assert_eq!(dollars(0), "$0.00");
        assert_eq!(thousands(1_250_000), "1,250,000");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn the_email_has_every_figure_a_table_chart_and_no_script() {
        let r = render(&sample());
        assert_eq!(r.subject, "Your Charlie Stats for 2026-01-05 to 2026-01-11");
        for needle in [
            "1,234",
            "+23%",
            "-50%",
            "Tutor &lt;b&gt;&amp;",
            "1,250,000",
            "$3.46",
            "Wed 7 Jan",
        ] {
            assert!(r.html.contains(needle), "{needle} missing from the HTML");
        }
        assert!(!r.html.to_lowercase().contains("<script"));
        // The busiest day's bar is full width, an empty day has none.
        assert!(r.html.contains("<td width=\"100%\" bgcolor=\"#4f46e5\""));
        assert_eq!(r.html.matches("bgcolor=\"#4f46e5\"").count(), 6);
        for needle in [
            "Messages:       1,234 (+23% vs the week before)",
            "Most active:    Tutor <b>& (800 messages)",
            "Estimated cost: $3.46",
        ] {
            assert!(
                r.text.contains(needle),
                "{needle} missing from the text:\n{}",
                r.text
            );
        }
    }
}
