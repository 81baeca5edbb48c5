//! What lifetimes a key may be given through the API. A key's life only ever shrinks: no
//! credential extends one past its expiry or past `identity.max_key_seconds`, and a
//! credential rotates only keys that expire no later than itself (else a short-lived login
//! token could turn a leak into a permanent secret).

use chrono::{DateTime, Utc};

/// No lifetime is longer than 100 years (and none overflows a timestamp).
pub const LONGEST_SECONDS: i64 = 100 * 365 * 24 * 3_600;

/// Why a lifetime is refused (answered 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifetimeError {
    #[error("seconds must be 0 (never expires) or a positive number of seconds")]
    Negative,
    #[error("keys expire within identity.max_key_seconds ({0} s) here: ask for 1 to {0} seconds")]
    PastMaximum(i64),
    #[error("seconds must be at most {LONGEST_SECONDS} (100 years), or 0 for never")]
    TooLong,
    #[error(
        "a key's life can only be shortened: this one expires at {0}, so ask for at most {1} \
         seconds"
    )]
    Extends(String, i64),
}

/// A requested lifetime (0 = never expires) checked against the maximum (0 = none).
pub fn lifetime(requested: i64, max: i64) -> Result<i64, LifetimeError> {
    match requested {
        s if s < 0 => Err(LifetimeError::Negative),
        s if s > LONGEST_SECONDS => Err(LifetimeError::TooLong),
        0 if max > 0 => Err(LifetimeError::PastMaximum(max)),
        s if max > 0 && s > max => Err(LifetimeError::PastMaximum(max)),
        s => Ok(s),
    }
}

/// When a key granted at `granted` for `seconds` (0 = never) expires; `None` for never.
pub fn expiry(granted: DateTime<Utc>, seconds: i64) -> Option<DateTime<Utc>> {
    (seconds != 0).then(|| granted + chrono::Duration::seconds(seconds))
}

/// The key's new lifetime (counted from `granted`, as stored) when it is to last `requested`
/// more seconds from `now`: only ever shorter than its present one.
pub fn shortened(
    granted: DateTime<Utc>,
    seconds: i64,
    requested: i64,
    max: i64,
    now: DateTime<Utc>,
) -> Result<i64, LifetimeError> {
    let requested = lifetime(requested, max)?;
    let wanted = now + chrono::Duration::seconds(requested);
    if let Some(expires) = expiry(granted, seconds)
        && (requested == 0 || wanted > expires)
    {
        let left = (expires - now).num_seconds().max(0);
        return Err(LifetimeError::Extends(
            expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            left,
        ));
    }
    Ok(((wanted - granted).num_milliseconds() + 999)
        .div_euclid(1_000)
        .max(1))
}

/// Whether a credential expiring at `holder` (`None`: never) may rotate a key expiring at
/// `key`: only when the key outlives it by nothing.
pub fn may_rotate(holder: Option<DateTime<Utc>>, key: Option<DateTime<Utc>>) -> bool {
    match (holder, key) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(holder), Some(key)) => key <= holder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn a_lifetime_is_bounded_by_the_maximum_and_never_forever_under_one() {
        assert_eq!(lifetime(60, 3_600), Ok(60));
        assert_eq!(
            lifetime(3_601, 3_600),
            Err(LifetimeError::PastMaximum(3_600))
        );
        assert_eq!(lifetime(0, 3_600), Err(LifetimeError::PastMaximum(3_600)));
        assert_eq!(lifetime(0, 0), Ok(0));
        assert_eq!(lifetime(-1, 0), Err(LifetimeError::Negative));
        assert_eq!(
            lifetime(100_000_000_000_000_000, 0),
            Err(LifetimeError::TooLong)
        );
    }

    #[test]
    fn a_key_can_be_shortened_never_lengthened_nor_made_permanent() {
        // Granted at 0 for an hour; now is 600 s in.
        assert_eq!(shortened(at(0), 3_600, 60, 0, at(600)), Ok(660));
        assert!(matches!(
            shortened(at(0), 3_600, 3_001, 0, at(600)),
            Err(LifetimeError::Extends(_, 3_000))
        ));
        assert!(matches!(
            shortened(at(0), 3_600, 0, 0, at(600)),
            Err(LifetimeError::Extends(_, 3_000))
        ));
        // A key that never expires may be given an end.
        assert_eq!(shortened(at(0), 0, 60, 0, at(600)), Ok(660));
    }

    #[test]
    fn a_credential_rotates_only_keys_that_do_not_outlive_it() {
        assert!(may_rotate(None, None));
        assert!(may_rotate(Some(at(100)), Some(at(100))));
        assert!(!may_rotate(Some(at(100)), Some(at(101))));
        assert!(!may_rotate(Some(at(100)), None));
    }
}
