//! Accounts (`ACCOUNTS_*`): who may sign up, which issuer signs login tokens, how long they last.

use crate::auth::keys::AuthConfig;

use super::reader::Reader;

/// Account settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsConfig {
    /// `ACCOUNTS_SIGNUP=open`: anyone may `POST /v2/users` on the public API (otherwise only a
    /// backend, on the internal API).
    pub signup_open: bool,
    /// `ACCOUNTS_ISSUER`: the issuer whose first secret signs login tokens, and whose namespace
    /// users live in; `None` when no issuer has a secret (logins are then refused, 503).
    pub issuer: Option<String>,
    /// `ACCOUNTS_TOKEN_LIFETIME`: seconds a login token lasts.
    pub token_lifetime_s: u64,
}

/// Reads the `ACCOUNTS_*` variables; `public` is the public API's issuers, `max_lifetime_s` its
/// maximum token lifetime.
pub(super) fn read(r: &mut Reader<'_>, public: &AuthConfig, max_lifetime_s: u64) -> AccountsConfig {
    let signup_open = match r.raw("ACCOUNTS_SIGNUP").as_deref().map(str::trim) {
        None | Some("") => false,
        Some(v) if v.eq_ignore_ascii_case("open") => true,
        Some(v) if v.eq_ignore_ascii_case("closed") => false,
        Some(v) => {
            r.fail("ACCOUNTS_SIGNUP", v, "expected open or closed");
            false
        }
    };
    let with_secret = |name: &str| public.issuer(name).is_some_and(|i| !i.secrets.is_empty());
    let issuer = match r
        .raw("ACCOUNTS_ISSUER")
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    {
        Some(name) if with_secret(&name) => Some(name),
        Some(name) => {
            r.fail(
                "ACCOUNTS_ISSUER",
                &name,
                "not an issuer of JWT_CONFIG with a shared secret (login tokens are signed with its first secret)",
            );
            None
        }
        None => public
            .issuers()
            .iter()
            .find(|i| !i.secrets.is_empty())
            .map(|i| i.name.to_string()),
    };
    let token_lifetime_s = r.integer("ACCOUNTS_TOKEN_LIFETIME", 900.min(max_lifetime_s), 1, 86_400 * 30);
    if token_lifetime_s > max_lifetime_s {
        r.fail(
            "ACCOUNTS_TOKEN_LIFETIME",
            &token_lifetime_s.to_string(),
            "longer than PUBLIC_API_JWT_MAX_LIFETIME: the public API would refuse its own login tokens",
        );
    }
    AccountsConfig {
        signup_open,
        issuer,
        token_lifetime_s,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    #[test]
    fn the_first_issuer_with_a_secret_signs_logins_by_default() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.accounts.issuer.as_deref(), Some("test_issuer1"));
        assert!(!c.accounts.signup_open);
        assert_eq!(c.accounts.token_lifetime_s, 120);
        let c = parse(&[("ACCOUNTS_ISSUER", "test_issuer2"), ("ACCOUNTS_SIGNUP", "OPEN")]).unwrap();
        assert_eq!(c.accounts.issuer.as_deref(), Some("test_issuer2"));
        assert!(c.accounts.signup_open);
        for (name, value) in [
            ("ACCOUNTS_ISSUER", "nobody"),
            ("ACCOUNTS_SIGNUP", "maybe"),
            ("ACCOUNTS_TOKEN_LIFETIME", "121"),
        ] {
            let err = parse(&[(name, value)]).unwrap_err();
            assert_eq!(err.0[0].name, name);
        }
    }
}
