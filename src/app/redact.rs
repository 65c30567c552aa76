//! Connection URLs fit for a log line.

/// A connection URL fit for a log line: the user name and the host, port
/// and path, never the password, and never the query (it may carry
/// `password=`). Nothing after the first `:` of the user info is printed,
/// so a password containing `/`, `?` or `@` cannot leak either.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    let (user, location) = match rest.rfind('@') {
        Some(at) => {
            let user_info = &rest[..at];
            let user = user_info.split(':').next().unwrap_or_default();
            let password = if user_info.contains(':') { ":***" } else { "" };
            (format!("{user}{password}@"), &rest[at + 1..])
        }
        None => (String::new(), rest),
    };
    let (location, query) = match location.find(['?', '#']) {
        Some(at) => (&location[..at], "?***"),
        None => (location, ""),
    };
    format!("{scheme}://{user}{location}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_logged_without_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/events"),
            "postgres://app:***@db:5432/events"
        );
        assert_eq!(
            redact_url("redis://:s3cret@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        assert!(!redact_url("postgres://u:p@w@h/db").contains("p@w"));
        let tricky = redact_url("postgres://pg:se/cret@127.0.0.1:55432/postgres?password=hunter2");
        assert_eq!(tricky, "postgres://pg:***@127.0.0.1:55432/postgres?***");
        assert!(!redact_url("postgres://pg:a?b@h/db").contains("a?b"));
        assert_eq!(
            redact_url("redis://cache:6379/0?pass=x"),
            "redis://cache:6379/0?***"
        );
    }
}
