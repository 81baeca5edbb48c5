//! Keyset pages: how many rows a listing answers, and the cursor of the next page.

use crate::error::ApiError;

/// How many rows a listing answers: `requested`, or `default` (capped at `max`), checked to
/// be 1 to `max`.
pub fn limit(requested: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = requested.unwrap_or(default.min(max));
    if !(1..=max).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {max}"
        )));
    }
    Ok(limit)
}

/// The `before` of the next page: the last row's position when the page is full.
pub fn next_before<T, C>(rows: &[T], limit: i64, position: impl Fn(&T) -> C) -> Option<C> {
    (rows.len() as i64 == limit)
        .then(|| rows.last().map(position))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_between_one_and_the_cap() {
        assert_eq!(limit(None, 20, 100).unwrap(), 20);
        assert_eq!(limit(None, 20, 10).unwrap(), 10);
        assert!(limit(Some(0), 20, 100).is_err());
        assert!(limit(Some(101), 20, 100).is_err());
    }

    #[test]
    fn only_a_full_page_has_a_next_one() {
        assert_eq!(next_before(&[1, 2, 3], 3, |r| *r), Some(3));
        assert_eq!(next_before(&[1, 2], 3, |r| *r), None);
    }
}
