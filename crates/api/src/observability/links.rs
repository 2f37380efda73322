//! Links from admin views to Sentry and LangSmith, built from configuration
//! so that self-hosted Sentry works too. Pure functions: the admin routes
//! call them for every row they return.

use crate::Settings;

/// Percent-encodes everything but RFC 3986 unreserved characters, so a value
/// is safe as one path segment or one query value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The Sentry page of an event, from `SENTRY_WEB_URL`, `SENTRY_ORG` and
/// `SENTRY_PROJECT`:
/// - org and project: `{web}/organizations/{org}/projects/{project}/events/{id}/`
///   (Sentry redirects it to the event's issue);
/// - org only: `{web}/organizations/{org}/issues/?query={id}`;
/// - neither: `{web}/issues/?query={id}` (the reporting plan's link).
///
/// `None` for an empty id.
pub fn sentry_url(settings: &Settings, event_id: &str) -> Option<String> {
    let id = event_id.trim();
    if id.is_empty() {
        return None;
    }
    let s = &settings.sentry;
    let web = s.web_url.trim_end_matches('/');
    Some(match (&s.org, &s.project) {
        (Some(org), Some(project)) => format!(
            "{web}/organizations/{}/projects/{}/events/{}/",
            encode(org),
            encode(project),
            encode(id)
        ),
        (Some(org), None) => format!(
            "{web}/organizations/{}/issues/?query={}",
            encode(org),
            encode(id)
        ),
        _ => format!("{web}/issues/?query={}", encode(id)),
    })
}

/// A LangSmith link that searches `LANGSMITH_PROJECT` for the traces of one
/// conversation: Langflow tags its runs with the conversation's
/// `langflow_session_id` (`session_id` metadata). `None` when no project is
/// configured or the session id is empty.
///
/// The link opens `{LANGSMITH_WEB_URL}/projects` with the project name and a
/// LangSmith filter expression; point `LANGSMITH_WEB_URL` at your
/// organization (`https://smith.langchain.com/o/<org id>`) for an exact link.
pub fn langsmith_url(settings: &Settings, session_id: &str) -> Option<String> {
    let session = session_id.trim();
    let project = settings.langsmith.project.as_deref()?.trim();
    if session.is_empty() || project.is_empty() {
        return None;
    }
    let web = settings.langsmith.web_url.trim_end_matches('/');
    let quoted = session.replace('\\', "\\\\").replace('"', "\\\"");
    let filter = format!(r#"and(eq(metadata_key, "session_id"), eq(metadata_value, "{quoted}"))"#);
    Some(format!(
        "{web}/projects?name={}&filter={}",
        encode(project),
        encode(&filter)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&'static str, &'static str)]) -> Settings {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        Settings::from_env(&env).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sentry_links_follow_the_configuration() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            sentry_url(&settings(&[]), id).as_deref(),
            Some("https://sentry.io/issues/?query=0123456789abcdef0123456789abcdef")
        );
        assert_eq!(
            sentry_url(&settings(&[("SENTRY_ORG", "acme")]), id).as_deref(),
            Some(
                "https://sentry.io/organizations/acme/issues/?query=0123456789abcdef0123456789abcdef"
            )
        );
        let self_hosted = settings(&[
            ("SENTRY_WEB_URL", "https://sentry.example.com/"),
            ("SENTRY_ORG", "acme"),
            ("SENTRY_PROJECT", "charlie-stats"),
        ]);
        assert_eq!(
            sentry_url(&self_hosted, id).as_deref(),
            Some(
                "https://sentry.example.com/organizations/acme/projects/charlie-stats/events/0123456789abcdef0123456789abcdef/"
            )
        );
        assert_eq!(sentry_url(&self_hosted, " "), None);
        // Ids come from ingested items too: they cannot break out of the URL.
        assert_eq!(
            sentry_url(&settings(&[]), "a b&c=d").as_deref(),
            Some("https://sentry.io/issues/?query=a%20b%26c%3Dd")
        );
    }

    #[test]
    fn langsmith_links_need_a_project() {
        assert_eq!(langsmith_url(&settings(&[]), "s-1"), None);
        let s = settings(&[("LANGSMITH_PROJECT", "teach-charlie-dev")]);
        assert_eq!(langsmith_url(&s, ""), None);
        let url = langsmith_url(&s, "sess \"1\"").unwrap_or_default();
        assert!(
            url.starts_with("https://smith.langchain.com/projects?name=teach-charlie-dev&filter="),
            "{url}"
        );
        assert!(url.contains("session_id"), "{url}");
        assert!(url.contains("sess%20%5C%221%5C%22"), "{url}");
        assert!(!url.contains(' '), "{url}");
    }

    #[test]
    fn web_urls_must_be_http() {
        let env: HashMap<&str, &str> = [("SENTRY_WEB_URL", "sentry.example.com")].into();
        assert_eq!(
            Settings::from_env(&env).err().map(|e| e.var),
            Some("SENTRY_WEB_URL")
        );
        let env: HashMap<&str, &str> = [("SENTRY_DSN", "not a dsn")].into();
        assert_eq!(
            Settings::from_env(&env).err().map(|e| e.var),
            Some("SENTRY_DSN")
        );
    }
}
