//! The triggers of a ScaledObject that Surge's scaling uses: exactly one `rabbitmq` (its
//! queue, what it counts, where it finds the broker) and at most one `external-push` (the
//! gateway). Reads them; judging them is `check`'s job.

use super::field::{Field, FieldError};
use super::{AuthenticationRef, BrokerHost};

/// KEDA's kind when `authenticationRef.kind` is left out.
pub(super) const DEFAULT_AUTH_KIND: &str = "TriggerAuthentication";

/// The triggers Surge uses: one rabbitmq, at most one external-push; others are ignored.
pub(super) struct Triggers<'a> {
    pub rabbit: Option<Field<'a>>,
    pub push: Option<Field<'a>>,
}

impl<'a> Triggers<'a> {
    pub fn read(list: &Field<'a>) -> Result<Self, FieldError> {
        let mut out = Self {
            rabbit: None,
            push: None,
        };
        for trigger in list.items()? {
            let slot = match trigger.get("type").required_str()? {
                "rabbitmq" => &mut out.rabbit,
                "external-push" => &mut out.push,
                _ => continue,
            };
            if slot.is_some() {
                return Err(trigger
                    .get("type")
                    .error("a second trigger of this type: Surge expects one per ScaledObject"));
            }
            *slot = Some(trigger);
        }
        Ok(out)
    }
}

/// The push trigger's `function`, else the queue's name after `fn.`.
pub(super) fn function_of(push_meta: Option<&Field>, queue: &Field) -> Result<String, FieldError> {
    if let Some(function) = push_meta
        .map(|m| m.get("function").str())
        .transpose()?
        .flatten()
    {
        return Ok(function.to_owned());
    }
    queue
        .required_str()?
        .rsplit_once("fn.")
        .map(|(_, f)| f.to_owned())
        .ok_or_else(|| {
            queue.error(
                "cannot tell the function: expected fn.<name>, or an external-push trigger \
                 with metadata function",
            )
        })
}

/// The push trigger's `scalerAddress` and `targetSize`.
pub(super) fn push_fields(
    push_meta: Option<&Field>,
) -> Result<(Option<String>, Option<f64>), FieldError> {
    let Some(meta) = push_meta else {
        return Ok((None, None));
    };
    let address = meta.get("scalerAddress").required_str()?.to_owned();
    Ok((Some(address), meta.get("targetSize").number()?))
}

/// The broker's address as the rabbitmq trigger's metadata gives it: `host` (a URL) or
/// `hostFromEnv` (a container variable); `None` when only a TriggerAuthentication can.
pub(super) fn host(meta: &Field) -> Result<Option<BrokerHost>, FieldError> {
    if let Some(url) = meta.get("host").str()? {
        return Ok(Some(BrokerHost::Url(url.to_owned())));
    }
    Ok(meta
        .get("hostFromEnv")
        .str()?
        .map(|var| BrokerHost::FromEnv(var.to_owned())))
}

/// The trigger's `authenticationRef`, not yet resolved against the files (see `join`).
pub(super) fn authentication(trigger: &Field) -> Result<Option<AuthenticationRef>, FieldError> {
    let reference = trigger.get("authenticationRef");
    if !reference.is_present() {
        return Ok(None);
    }
    Ok(Some(AuthenticationRef {
        kind: reference
            .get("kind")
            .str()?
            .unwrap_or(DEFAULT_AUTH_KIND)
            .to_owned(),
        name: reference.get("name").required_str()?.to_owned(),
        defined: Vec::new(),
    }))
}

/// A `"true"` / `"false"` flag (KEDA metadata is strings; booleans are accepted too).
pub(super) fn flag(field: &Field) -> Result<bool, FieldError> {
    match field.text()?.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(field.error(format!("{other:?}: expected \"true\" or \"false\""))),
    }
}
