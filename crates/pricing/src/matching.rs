//! Model-name matching: from what a payload or a user writes to catalog keys.

/// Cloud-region prefixes of Bedrock cross-region inference profiles.
const REGIONS: &[&str] = &[
    "us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.",
];

/// Vendor prefixes of Bedrock model ids.
const VENDORS: &[&str] = &[
    "anthropic.",
    "meta.",
    "mistral.",
    "amazon.",
    "cohere.",
    "ai21.",
    "deepseek.",
    "openai.",
    "qwen.",
    "writer.",
];

/// The key a name is indexed under: lowercase, without provider path
/// (`openai/`, `models/`, ARNs), Bedrock region and vendor prefixes, or
/// Bedrock version suffix (`-v2:0`). Snapshot dates are kept.
pub(crate) fn canonical(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let mut s: &str = lower.rsplit('/').next().unwrap_or(&lower);
    for region in REGIONS {
        if let Some(rest) = s.strip_prefix(region)
            && VENDORS.iter().any(|v| rest.starts_with(v))
        {
            s = rest;
            break;
        }
    }
    for vendor in VENDORS {
        if let Some(rest) = s.strip_prefix(vendor) {
            s = rest;
            break;
        }
    }
    if let Some((head, tail)) = s.rsplit_once(':')
        && !tail.is_empty()
        && tail.bytes().all(|b| b.is_ascii_digit())
    {
        s = head;
    }
    strip_version(s).to_owned()
}

/// Without a trailing `-v2` version marker.
fn strip_version(s: &str) -> &str {
    match s.rsplit_once("-v") {
        Some((head, tail)) if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => s,
    }
}

fn all_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

/// The name without one snapshot marker: `@20241022`, `-2024-08-06`,
/// `-20241022`, `-0613`, `-2411`, `-001`, `-latest`.
pub(crate) fn strip_snapshot(s: &str) -> Option<&str> {
    if let Some((head, _)) = s.split_once('@') {
        // Vertex writes `claude-3-5-sonnet-v2@20241022`.
        return Some(strip_version(head)).filter(|h| !h.is_empty());
    }
    if let Some(head) = s.strip_suffix("-latest") {
        return Some(head).filter(|h| !h.is_empty());
    }
    let parts: Vec<&str> = s.rsplitn(4, '-').collect();
    if parts.len() == 4
        && all_digits(parts[2], 4)
        && all_digits(parts[1], 2)
        && all_digits(parts[0], 2)
    {
        return Some(parts[3]);
    }
    if parts.len() >= 2
        && (all_digits(parts[0], 8) || all_digits(parts[0], 4) || all_digits(parts[0], 3))
    {
        let cut = s.len() - parts[0].len() - 1;
        return Some(&s[..cut]);
    }
    None
}

/// Names to look up, most specific first.
pub(crate) fn candidates(name: &str) -> Vec<String> {
    let lower = name.trim().to_ascii_lowercase();
    let mut out = vec![lower.clone()];
    let mut current = canonical(&lower);
    if current != lower {
        out.push(current.clone());
    }
    while let Some(next) = strip_snapshot(&current) {
        let next = next.to_owned();
        out.push(next.clone());
        current = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_walk_from_specific_to_family() {
        let cases: &[(&str, &[&str])] = &[
            ("gpt-4o", &["gpt-4o"]),
            ("GPT-4o-2024-08-06", &["gpt-4o-2024-08-06", "gpt-4o"]),
            ("openai/gpt-4o-mini", &["openai/gpt-4o-mini", "gpt-4o-mini"]),
            (
                "models/gemini-2.5-pro",
                &["models/gemini-2.5-pro", "gemini-2.5-pro"],
            ),
            (
                "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
                &[
                    "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
                    "claude-3-5-sonnet-20241022",
                    "claude-3-5-sonnet",
                ],
            ),
            (
                "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-sonnet-4-20250514-v1:0",
                &[
                    "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-sonnet-4-20250514-v1:0",
                    "claude-sonnet-4-20250514",
                    "claude-sonnet-4",
                ],
            ),
            (
                "claude-3-5-sonnet-v2@20241022",
                &["claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"],
            ),
            ("gpt-4-0613", &["gpt-4-0613", "gpt-4"]),
            (
                "mistral-large-latest",
                &["mistral-large-latest", "mistral-large"],
            ),
            (
                "gemini-1.5-pro-002",
                &["gemini-1.5-pro-002", "gemini-1.5-pro"],
            ),
            (
                "meta.llama3-1-70b-instruct-v1:0",
                &["meta.llama3-1-70b-instruct-v1:0", "llama3-1-70b-instruct"],
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(&candidates(name), expected, "{name}");
        }
    }
}
