//! List pagination shared by every list route: `?limit=` (default 50, max 1000) and an
//! opaque `?cursor=`; responses are `{"items": […], "nextCursor": …}`. A cursor is the
//! base64url of the last item's sort key, so it survives inserts between pages.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1000;

/// The query parameters of a list route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated page request: how many items, after which sort key.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<String>,
}

impl PageQuery {
    pub fn validate(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be from 1 to {MAX_LIMIT}"),
            ));
        }
        let after = self
            .cursor
            .as_deref()
            .map(|c| {
                URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_cursor",
                            "the cursor is not one this server issued",
                        )
                    })
            })
            .transpose()?;
        Ok(PageRequest { limit, after })
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says there is more.
    pub fn from_overfetch(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Page<T> {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = more
            .then(|| items.last().map(|t| URL_SAFE_NO_PAD.encode(key(t))))
            .flatten();
        Page { items, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overfetch_sets_cursor_only_when_more_exist() {
        let p = Page::from_overfetch(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(p.items, vec![1, 2]);
        let q = PageQuery {
            limit: Some(2),
            cursor: p.next_cursor,
        };
        assert_eq!(q.validate().expect("valid").after.as_deref(), Some("2"));
        assert!(
            Page::from_overfetch(vec![1, 2], 2, |n| n.to_string())
                .next_cursor
                .is_none()
        );
    }

    #[test]
    fn rejects_out_of_range_limits_and_foreign_cursors() {
        assert!(
            PageQuery {
                limit: Some(0),
                cursor: None
            }
            .validate()
            .is_err()
        );
        assert!(
            PageQuery {
                limit: Some(1001),
                cursor: None
            }
            .validate()
            .is_err()
        );
        assert!(
            PageQuery {
                limit: None,
                cursor: Some("%%".into())
            }
            .validate()
            .is_err()
        );
    }
}
