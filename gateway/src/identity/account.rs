//! Which account an ID token speaks for: pure rules, tested here.
//!
//! An entity is an email within a tenant. The email counts only when the provider says it is
//! verified, or when the tenant is configured as authoritative for the address's domain (its
//! own directory). Otherwise anyone who can type an address into a provider's sign-up form
//! could log in as its owner.

use serde_json::{Map, Value};

use crate::config::TenantSettings;

/// The claims of a verified ID token that Surge uses, plus all of them for `auth_claims`.
#[derive(Debug, Clone)]
pub struct IdClaims {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub groups: Vec<String>,
    /// The token's `exp`, when it has one.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Every claim, minus the per-token ones that say nothing about the person.
    pub kept: Map<String, Value>,
}

/// Claims that belong to one token, not to the person: not worth keeping.
const PER_TOKEN: &[&str] = &[
    "nonce",
    "at_hash",
    "c_hash",
    "exp",
    "iat",
    "auth_time",
    "jti",
];

impl IdClaims {
    /// Reads the claims of an ID token whose signature and standard claims are already
    /// verified (the payload is only decoded here, never trusted on its own).
    pub fn from_verified_jwt(jwt: &str) -> Option<Self> {
        let payload = jwt.split('.').nth(1)?;
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let all: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
        Self::from_map(all)
    }

    pub fn from_map(mut all: Map<String, Value>) -> Option<Self> {
        let subject = all.get("sub")?.as_str()?.to_owned();
        let email = all
            .get("email")
            .and_then(Value::as_str)
            .map(|e| e.trim().to_lowercase())
            .filter(|e| !e.is_empty());
        let email_verified = match all.get("email_verified") {
            Some(Value::Bool(b)) => *b,
            // Some providers send the string "true".
            Some(Value::String(s)) => s == "true",
            _ => false,
        };
        let groups = match all.get("groups") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let expires_at = all
            .get("exp")
            .and_then(Value::as_i64)
            .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0));
        all.retain(|k, _| !PER_TOKEN.contains(&k.as_str()));
        Some(Self {
            subject,
            email,
            email_verified,
            groups,
            expires_at,
            kept: all,
        })
    }

    pub fn is_admin(&self, tenant: &TenantSettings) -> bool {
        is_admin(&self.groups, tenant)
    }
}

pub fn is_admin(groups: &[String], tenant: &TenantSettings) -> bool {
    tenant
        .admin_group
        .as_ref()
        .is_some_and(|admin| groups.iter().any(|g| g == admin))
}

/// Why a login is refused although the token is genuine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the provider gave no email address; the tenant must grant the `email` scope (add it to tenants.<name>.scopes)"
    )]
    NoEmail,
    #[error(
        "the provider has not verified this email address; verify it with the provider, or list its domain in the tenant's authoritative_domains"
    )]
    Unverified,
    #[error(
        "this email address already belongs to another account of this provider (a different subject); ask an admin"
    )]
    SubjectChanged,
}

/// The account (email) a login or bearer token speaks for in `tenant`.
pub fn account(claims: &IdClaims, tenant: &TenantSettings) -> Result<String, Refusal> {
    let email = claims.email.as_ref().ok_or(Refusal::NoEmail)?;
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let authoritative = tenant
        .authoritative_domains
        .iter()
        .any(|d| d.eq_ignore_ascii_case(domain));
    if claims.email_verified || authoritative {
        Ok(email.clone())
    } else {
        Err(Refusal::Unverified)
    }
}

/// An entity stays bound to the subject of its first login: the same email with another
/// subject is someone else (a re-assigned address, an account re-created at the provider).
pub fn check_subject(bound: Option<&str>, presented: &str) -> Result<(), Refusal> {
    match bound {
        Some(bound) if bound != presented => Err(Refusal::SubjectChanged),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenant() -> TenantSettings {
        serde_json::from_value(json!({
            "name": "a", "issuer": "http://127.0.0.1:4001", "client_id": "gw",
            "client_secret": "s", "redirect_url": "http://127.0.0.1:8080/callback",
            "admin_group": "admins", "authoritative_domains": ["corp.test"]
        }))
        .unwrap()
    }

    fn claims(v: Value) -> IdClaims {
        IdClaims::from_map(v.as_object().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_verified_email_is_the_account_lowercased() {
        let c = claims(json!({"sub": "1", "email": "Alice@Example.test", "email_verified": true}));
        assert_eq!(account(&c, &tenant()).unwrap(), "alice@example.test");
    }

    #[test]
    fn an_unverified_email_is_refused_unless_the_tenant_owns_its_domain() {
        let c = claims(json!({"sub": "1", "email": "carol@example.test", "email_verified": false}));
        assert_eq!(account(&c, &tenant()), Err(Refusal::Unverified));
        let c = claims(json!({"sub": "1", "email": "dan@CORP.test"}));
        assert_eq!(account(&c, &tenant()).unwrap(), "dan@corp.test");
        let c = claims(json!({"sub": "1"}));
        assert_eq!(account(&c, &tenant()), Err(Refusal::NoEmail));
    }

    #[test]
    fn a_different_subject_for_a_known_email_is_refused() {
        assert_eq!(check_subject(Some("a"), "a"), Ok(()));
        assert_eq!(check_subject(None, "a"), Ok(()));
        assert_eq!(check_subject(Some("a"), "b"), Err(Refusal::SubjectChanged));
    }

    #[test]
    fn admin_comes_from_the_configured_group_only() {
        let c = claims(json!({"sub": "1", "groups": ["staff", "admins"]}));
        assert!(c.is_admin(&tenant()));
        let c = claims(json!({"sub": "1", "groups": ["staff"]}));
        assert!(!c.is_admin(&tenant()));
        let mut t = tenant();
        t.admin_group = None;
        let c = claims(json!({"sub": "1", "groups": ["admins"]}));
        assert!(!c.is_admin(&t));
    }

    #[test]
    fn per_token_claims_are_not_kept() {
        let c = claims(json!({"sub": "1", "nonce": "n", "exp": 1, "name": "A"}));
        assert!(c.kept.contains_key("name") && c.kept.contains_key("sub"));
        assert!(!c.kept.contains_key("nonce") && !c.kept.contains_key("exp"));
    }

    #[test]
    fn claims_come_from_the_jwt_payload() {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"x","groups":["g"]}"#);
        let c = IdClaims::from_verified_jwt(&format!("h.{payload}.s")).unwrap();
        assert_eq!(
            (c.subject.as_str(), c.groups.as_slice()),
            ("x", &["g".to_owned()][..])
        );
        assert!(IdClaims::from_verified_jwt("garbage").is_none());
    }
}
