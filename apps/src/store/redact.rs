//! Keeping database passwords out of logs, errors and `/health`: the URL shown redacted, and any
//! text from the database client cleaned of the password in every spelling it may quote.

/// `url` with its password replaced by `***`, for logs and errors: `postgres://u:pw@h/db` ->
/// `postgres://u:***@h/db`, and a `password=` query parameter likewise. Anything else is returned
/// as it is.
pub fn redact_url(url: &str) -> String {
    let mut redacted = url.to_string();
    if let Some(userinfo) = userinfo_password(url) {
        redacted.replace_range(userinfo, "***");
    }
    if let Some(query_start) = redacted.find('?') {
        let (head, query) = redacted.split_at(query_start + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        redacted = format!("{head}{query}");
    }
    redacted
}

/// `text` (a database client's message about `url`) with every password of `url` replaced by
/// `***`, as written in the URL and percent-decoded.
pub(super) fn scrub_password(text: &str, url: &str) -> String {
    let mut secrets: Vec<String> = Vec::new();
    if let Some(range) = userinfo_password(url) {
        secrets.push(url[range].to_string());
    }
    if let Some((_, query)) = url.split_once('?') {
        secrets.extend(query.split('&').filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            key.eq_ignore_ascii_case("password")
                .then(|| value.to_string())
        }));
    }
    let decoded: Vec<String> = secrets.iter().map(|s| percent_decode(s)).collect();
    secrets.extend(decoded);
    // Longest first, so that a secret containing another is replaced whole.
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
        .iter()
        .fold(text.to_string(), |text, secret| text.replace(secret, "***"))
}

/// Where the password of a `scheme://user:password@host/...` URL lies. As libpq reads it, the
/// user part ends at the last `@` before the first `/`: a `?` or `#` in it is still password.
fn userinfo_password(url: &str) -> Option<std::ops::Range<usize>> {
    let authority_start = url.find("://")? + 3;
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    let at = authority_start + url[authority_start..authority_end].rfind('@')?;
    let colon = authority_start + url[authority_start..at].find(':')?;
    Some(colon + 1..at)
}

/// `%XX` sequences decoded; anything malformed is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive_redaction() {
        assert_eq!(
            redact_url("postgres://app:s3cr:et@db.internal:5432/anomalies"),
            "postgres://app:***@db.internal:5432/anomalies"
        );
        assert_eq!(
            redact_url("postgresql://app:pw@db/x?sslmode=require&password=pw2"),
            "postgresql://app:***@db/x?sslmode=require&password=***"
        );
        // libpq ends the user part at `@`, not at `?`.
        assert_eq!(
            redact_url("postgres://u:pa?ss@h/db"),
            "postgres://u:***@h/db"
        );
        // No password: nothing to hide, nothing changed.
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("anomalies.db"), "anomalies.db");
        // An @ in the path is not a user.
        assert_eq!(redact_url("postgres://db/x@y"), "postgres://db/x@y");
    }

    #[test]
    fn client_messages_lose_the_password_in_every_spelling() {
        let url = "postgres://app:hun%7Eter2@db/x?password=other";
        let message = "invalid percent-encoded token: \"hun%7Eter2\"; tried hun~ter2 and other";
        let scrubbed = scrub_password(message, url);
        for secret in ["hun%7Eter2", "hun~ter2", "other"] {
            assert!(!scrubbed.contains(secret), "{secret} in {scrubbed}");
        }
        assert_eq!(scrubbed.matches("***").count(), 3);
        assert_eq!(
            scrub_password("no secret here", "anomalies.db"),
            "no secret here"
        );
    }

    #[test]
    fn opening_a_store_never_names_the_password() {
        for url in [
            // A malformed percent-encoding that libpq quotes back.
            "postgres://app:hunter2%zz@127.0.0.1:1/x",
            // Nothing listens on port 1: a connection error.
            "postgres://app:hunter2@127.0.0.1:1/x",
            // An upper-case scheme is not PostgreSQL's, and not a file name either.
            "POSTGRES://app:hunter2@127.0.0.1:1/x",
        ] {
            let error = format!("{:#}", super::super::Store::open(url).err().expect("fails"));
            assert!(!error.contains("hunter2"), "{url}: {error}");
            assert!(error.contains("127.0.0.1"), "{url}: says where: {error}");
        }
    }
}
