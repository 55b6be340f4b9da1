//! Where variables come from and how one is read: the [`Env`] source and the [`Reader`] that
//! every area's `read` goes through, so each area states only its variables, defaults and bounds
//! while the error collection and the wording of common reasons stay in one place.

use std::collections::HashMap;
use std::net::IpAddr;

use super::VarError;

/// A source of configuration variables.
pub trait Env {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Reads variables and collects every error instead of stopping at the first.
pub(super) struct Reader<'a> {
    env: &'a dyn Env,
    /// Every bad variable so far, in the order it was read.
    pub(super) errors: Vec<VarError>,
}

impl<'a> Reader<'a> {
    /// A reader of `env` that has found no error yet.
    pub(super) fn new(env: &'a dyn Env) -> Reader<'a> {
        Reader {
            env,
            errors: Vec::new(),
        }
    }

    /// The value of `name` as set, untrimmed; `None` when unset.
    pub(super) fn raw(&self, name: &'static str) -> Option<String> {
        self.env.var(name)
    }

    /// Records that `name` is bad; `value` is what the operator sees, so mask secrets first.
    pub(super) fn fail(&mut self, name: &'static str, value: &str, reason: impl Into<String>) {
        self.errors.push(VarError {
            name,
            value: value.to_owned(),
            reason: reason.into(),
        });
    }

    /// Parses `name` with `parse`, or returns `default` when unset.
    pub(super) fn parse<T>(
        &mut self,
        name: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match self.raw(name) {
            None => default,
            Some(value) => match parse(value.trim()) {
                Ok(v) => v,
                Err(reason) => {
                    self.fail(name, &value, reason);
                    default
                }
            },
        }
    }

    /// A whole number from `min` to `max`.
    pub(super) fn integer(&mut self, name: &'static str, default: u64, min: u64, max: u64) -> u64 {
        self.parse(name, default, |s| match s.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(format!("expected a whole number from {min} to {max}")),
        })
    }

    /// A TCP port; 0 lets the system pick.
    pub(super) fn port(&mut self, name: &'static str, default: u16) -> u16 {
        self.integer(name, u64::from(default), 0, 65535) as u16
    }

    /// An IP address to bind, `0.0.0.0` when unset.
    pub(super) fn host(&mut self, name: &'static str) -> IpAddr {
        let default = IpAddr::from([0, 0, 0, 0]);
        self.parse(name, default, |s| {
            s.parse::<IpAddr>()
                .map_err(|_| "expected an IP address such as 0.0.0.0 or 127.0.0.1".to_owned())
        })
    }

    /// `true`/`false` (or `1`/`0`, `yes`/`no`, any case); empty is false.
    pub(super) fn boolean(&mut self, name: &'static str, default: bool) -> bool {
        self.parse(name, default, |s| match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" | "" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        })
    }
}
