//! Parts of a request several routes read the same way: the body (raw or JSON) against the
//! size limit, and `Idempotency-Key`.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::{HeaderMap, StatusCode};

use crate::error::ApiError;

/// A body that could not be read: too large (`413`, naming the limit) or broken (`400`).
pub fn body_error(e: &BytesRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(limit)
    } else {
        ApiError::BadRequest(format!("the body could not be read: {}", e.body_text()))
    }
}

/// A JSON body that could not be taken: too large (`413`, naming the limit) or not the
/// expected document (`400 invalid-json`, saying why).
pub fn json_error(e: &JsonRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge(limit);
    }
    ApiError::InvalidJson(e.body_text())
}

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad =
        || ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into());
    let key = value.to_str().map_err(|_| bad())?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn idempotency_keys_are_checked() {
        let mut h = HeaderMap::new();
        assert_eq!(idempotency_key(&h).unwrap(), None);
        h.insert("idempotency-key", HeaderValue::from_static("order-42"));
        assert_eq!(idempotency_key(&h).unwrap(), Some("order-42"));
        h.insert("idempotency-key", HeaderValue::from_static("has space"));
        assert!(idempotency_key(&h).is_err());
    }
}
