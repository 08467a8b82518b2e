//! Reading a listing: every page of `GET /snapshots/`, followed through `next` within
//! bounds (pages, time, the provider's own origin), checked as a [`Listing`].

use reqwest::Method;

use super::ApiError;
use super::assumptions::{MAX_LISTING_TIME, MAX_PAGES};
use super::budget::Class;
use super::client::Client;
use super::listing::Listing;
use super::text::display_path;
use super::types::{Snapshot, SnapshotPage};

/// What a listing said about its size: the total `count`, pages read, and the page
/// size (known when there was a second page).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListingInfo {
    pub count: Option<u64>,
    pub pages: usize,
    pub page_size: Option<usize>,
}

impl Client {
    /// Every snapshot of `server` (or of the account), following `next` pages, as
    /// checked (see [`Listing`]).
    pub async fn list_snapshots(&self, server: Option<u64>) -> Result<Listing, ApiError> {
        self.list_snapshots_with_info(server)
            .await
            .map(|(all, _)| all)
    }

    /// Like `list_snapshots`, with what the answer said about its size.
    pub async fn list_snapshots_with_info(
        &self,
        server: Option<u64>,
    ) -> Result<(Listing, ListingInfo), ApiError> {
        let pages = tokio::time::timeout(MAX_LISTING_TIME, Box::pin(self.read_pages(server)));
        let (entries, info) = pages.await.map_err(|_| ApiError::Protocol {
            call: "GET /snapshots/".into(),
            message: format!(
                "the listing took longer than {}",
                humantime::format_duration(MAX_LISTING_TIME)
            ),
        })??;
        let (listing, foreign) = Listing::check(entries, server, info.count);
        if foreign > 0
            && let Some(id) = server
        {
            tracing::warn!(
                "the listing of server {id} held {foreign} snapshot(s) of other servers (the provider ignored ?server_id=); they are left out"
            );
        }
        if let Some(doubt) = &listing.doubt {
            tracing::warn!(
                "the provider's listing does not add up: {doubt}; nothing is deleted on its word"
            );
        }
        Ok((listing, info))
    }

    async fn read_pages(
        &self,
        server: Option<u64>,
    ) -> Result<(Vec<Snapshot>, ListingInfo), ApiError> {
        let mut url = self.url("snapshots/")?;
        if let Some(id) = server {
            url.query_pairs_mut()
                .append_pair("server_id", &id.to_string());
        }
        // One listing, one place in the budget's line, for all its pages.
        let place = self.place(Class::Listing);
        let mut all = Vec::new();
        let mut info = ListingInfo::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let call = format!("GET {}", display_path(&url));
            let page: SnapshotPage = self
                .call_json(place, Method::GET, url.clone(), None::<&()>, &call)
                .await?;
            info.count = info.count.or(page.count);
            info.pages += 1;
            let len = page.results.len();
            all.extend(page.results);
            let Some(next) = page.next.filter(|n| !n.is_empty()) else {
                return Ok((all, info));
            };
            info.page_size = info.page_size.or(Some(len.max(1)));
            let next_url = self.base.join(&next).map_err(|e| ApiError::Protocol {
                call: call.clone(),
                message: format!("`next` is not a URL ({e})"),
            })?;
            if next_url.origin() != self.base.origin() {
                return Err(ApiError::Protocol {
                    call,
                    message: format!(
                        "`next` points to another site ({}); not following it with the token",
                        next_url.origin().ascii_serialization()
                    ),
                });
            }
            if !seen.insert(next_url.to_string()) {
                return Err(ApiError::Protocol {
                    call,
                    message: "`next` leads back to a page already read".into(),
                });
            }
            url = next_url;
        }
        Err(ApiError::Protocol {
            call: "GET /snapshots/".into(),
            message: format!("more than {MAX_PAGES} pages"),
        })
    }
}
