//! Authentication of both APIs: the issuers, keys and audience of `JWT_CONFIG` (or the
//! development keys when it is unset), and how much a 403 says.

use crate::auth::jwks::JwksTiming;
use crate::auth::keys::{AuthConfig, JwtConfigError, development_auth, parse_jwt_config};

use super::reader::Reader;

/// Authentication settings of both APIs.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Subscriber tokens.
    pub public: AuthConfig,
    /// Publisher tokens.
    pub internal: AuthConfig,
    /// Whether 403s say precisely why.
    pub verbose_errors: bool,
    /// True when `JWT_CONFIG` was unset and the public development keys are in use.
    pub development_keys: bool,
    /// `JWKS_REFRESH_INTERVAL` and `JWKS_MIN_REFETCH_INTERVAL`, for issuers with a `jwks_url`.
    pub jwks_timing: JwksTiming,
}

/// Reads `VERBOSE_AUTHENTICATION_ERRORS` and `JWT_CONFIG`.
pub(super) fn read(r: &mut Reader<'_>) -> AuthSettings {
    let verbose_errors = r.boolean("VERBOSE_AUTHENTICATION_ERRORS", false);
    let jwks_timing = JwksTiming {
        refresh: std::time::Duration::from_secs(r.integer("JWKS_REFRESH_INTERVAL", 300, 1, 86_400)),
        min_refetch: std::time::Duration::from_secs(r.integer("JWKS_MIN_REFETCH_INTERVAL", 10, 1, 3_600)),
    };
    let (public, internal, development_keys) = match r.raw("JWT_CONFIG") {
        None => {
            let (public, internal) = development_auth();
            (public, internal, true)
        }
        Some(json) => match parse_jwt_config(&json) {
            Ok(auth) => (auth.clone(), auth, false),
            Err(e) => {
                // The value holds secrets: never echo it.
                r.fail("JWT_CONFIG", "***", jwt_config_reason(&e));
                let (public, internal) = development_auth();
                (public, internal, false)
            }
        },
    };
    AuthSettings {
        public,
        internal,
        verbose_errors,
        development_keys,
        jwks_timing,
    }
}

fn jwt_config_reason(e: &JwtConfigError) -> String {
    format!("{e}; expected JSON like {{\"service_name\":\"my-audience\",\"clients\":{{\"my-issuer\":\"secret\"}}}}")
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    #[test]
    fn a_malformed_jwt_config_is_named_and_its_secrets_are_not_echoed() {
        let err = parse(&[("JWT_CONFIG", "{\"clients\":{\"a\":\"topsecret\"}")]).unwrap_err();
        assert_eq!(err.0[0].name, "JWT_CONFIG");
        assert!(!err.to_string().contains("topsecret"));
    }

    #[test]
    fn jwt_config_sets_one_audience_and_issuer_list_for_both_apis() {
        let c = parse(&[(
            "JWT_CONFIG",
            r#"{"local_name":"neurow","service_name":"svc","algorithm":"HS256","clients":{"test":"secret","rot":["a","b"]}}"#,
        )])
        .unwrap();
        assert!(!c.auth.development_keys);
        assert_eq!(c.auth.public.audience, "svc");
        assert_eq!(c.auth.internal.audience, "svc");
        assert_eq!(c.auth.public.issuer("rot").unwrap().secrets.len(), 2);
    }
}
