//! The development API key: one key from configuration, one entity. Compared in constant time.

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::Caller;

#[derive(Debug)]
pub struct DevKey {
    key: SecretString,
    caller: Caller,
}

impl DevKey {
    pub fn new(key: SecretString, entity_id: Uuid, tenant: String, admin: bool) -> Self {
        Self {
            key,
            caller: Caller {
                entity_id,
                tenant,
                key_id: None,
                expires_at: None,
                admin,
                persona: None,
            },
        }
    }

    pub fn check(&self, presented: &str) -> Option<Caller> {
        // An empty key (which configuration refuses anyway) never matches an empty header.
        if presented.is_empty() || self.key.expose_secret().is_empty() {
            return None;
        }
        let equal: bool = self
            .key
            .expose_secret()
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into();
        equal.then(|| self.caller.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_passes() {
        let dev = DevKey::new(
            SecretString::from("s3cret-key"),
            Uuid::nil(),
            "dev".into(),
            false,
        );
        assert!(dev.check("s3cret-key").is_some());
        assert!(dev.check("s3cret-kez").is_none());
        assert!(dev.check("s3cret").is_none());
        assert!(dev.check("").is_none());
    }

    #[test]
    fn an_empty_key_never_matches_an_empty_header() {
        let dev = DevKey::new(SecretString::from(""), Uuid::nil(), "dev".into(), true);
        assert!(dev.check("").is_none());
    }
}
