//! Reading a listing: every page of `GET /snapshots/` (or `GET /servers/`), followed
//! through `next` within bounds (pages, time, the provider's own origin), checked as a
//! [`Listing`] (or a [`ServerListing`]).

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::ApiError;
use super::assumptions::{MAX_LISTING_TIME, MAX_PAGES};
use super::budget::Class;
use super::client::Client;
use super::listing::{Check, Listing};
use super::text::display_path;
use super::types::{Page, Server};

/// What a listing said about its size: the total `count`, pages read, and the page
/// size (known when there was a second page).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListingInfo {
    pub count: Option<u64>,
    /// The distinct entries read, kept or not.
    pub distinct: usize,
    pub pages: usize,
    pub page_size: Option<usize>,
}

/// The servers of the account, as checked: each once. A listing that held fewer
/// entries than its `count` said is not `complete`: a server missing from it is not
/// known to be gone.
#[derive(Debug, Clone, Default)]
pub struct ServerListing {
    pub servers: Vec<Server>,
    pub complete: bool,
}

impl ServerListing {
    /// Checks the entries of `GET /servers/`: a server shown twice the same way counts
    /// once; one shown under two names makes the listing unusable (which name would a
    /// glob match?).
    pub fn check(entries: Vec<Server>, count: Option<u64>) -> Result<ServerListing, String> {
        let mut by_id: std::collections::BTreeMap<u64, Server> = Default::default();
        for s in entries {
            match by_id.get(&s.id) {
                Some(seen) if seen.name != s.name => {
                    return Err(format!(
                        "server {} is listed twice, as {:?} and as {:?}",
                        s.id,
                        seen.name.as_deref().unwrap_or(""),
                        s.name.as_deref().unwrap_or("")
                    ));
                }
                _ => {
                    by_id.insert(s.id, s);
                }
            }
        }
        let complete = count.is_none_or(|c| c <= by_id.len() as u64);
        Ok(ServerListing {
            servers: by_id.into_values().collect(),
            complete,
        })
    }
}

impl Client {
    /// Every server of the account, following `next` pages, as checked (see
    /// [`ServerListing`]).
    pub async fn list_servers(&self) -> Result<ServerListing, ApiError> {
        let url = self.url(super::assumptions::SERVERS_LISTING)?;
        let pages = tokio::time::timeout(MAX_LISTING_TIME, Box::pin(self.read_pages(url)));
        let (entries, info) = pages.await.map_err(|_| ApiError::Protocol {
            call: "GET /servers/".into(),
            message: format!(
                "the listing took longer than {}",
                humantime::format_duration(MAX_LISTING_TIME)
            ),
        })??;
        ServerListing::check(entries, info.count).map_err(|message| ApiError::Protocol {
            call: "GET /servers/".into(),
            message: format!("the listing does not add up: {message}"),
        })
    }

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
        self.list_snapshots_of(server, move |id| server.is_none_or(|s| s == id))
            .await
    }

    /// Like `list_snapshots_with_info`, keeping of each page as it comes only the
    /// snapshots of the servers `keep` accepts (the whole listing is still checked).
    pub async fn list_snapshots_of(
        &self,
        server: Option<u64>,
        keep: impl Fn(u64) -> bool + Send,
    ) -> Result<(Listing, ListingInfo), ApiError> {
        let mut url = self.url("snapshots/")?;
        if let Some(id) = server {
            url.query_pairs_mut()
                .append_pair("server_id", &id.to_string());
        }
        let mut check = Check::new(keep);
        let pages = Box::pin(self.read_pages_with(url, |page| check.page(page)));
        let info = tokio::time::timeout(MAX_LISTING_TIME, pages)
            .await
            .map_err(|_| ApiError::Protocol {
                call: "GET /snapshots/".into(),
                message: format!(
                    "the listing took longer than {}",
                    humantime::format_duration(MAX_LISTING_TIME)
                ),
            })??;
        let (listing, foreign) = check.finish(info.count);
        let info = ListingInfo {
            distinct: listing.len() + foreign,
            ..info
        };
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

    /// Every entry of the listing that starts at `url`.
    async fn read_pages<T: DeserializeOwned>(
        &self,
        url: url::Url,
    ) -> Result<(Vec<T>, ListingInfo), ApiError> {
        let mut all = Vec::new();
        let info = self.read_pages_with(url, |page| all.extend(page)).await?;
        Ok((all, info))
    }

    /// Hands each page's entries of the listing that starts at `url` to `each`.
    async fn read_pages_with<T: DeserializeOwned>(
        &self,
        mut url: url::Url,
        mut each: impl FnMut(Vec<T>),
    ) -> Result<ListingInfo, ApiError> {
        let first = format!("GET {}", display_path(&url));
        // One listing, one place in the budget's line, for all its pages.
        let place = self.place(Class::Listing);
        let mut info = ListingInfo::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let call = format!("GET {}", display_path(&url));
            let page: Page<T> = self
                .call_json(place, Method::GET, url.clone(), None::<&()>, &call)
                .await?;
            info.count = info.count.or(page.count);
            info.pages += 1;
            let len = page.results.len();
            each(page.results);
            let Some(next) = page.next.filter(|n| !n.is_empty()) else {
                return Ok(info);
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
            call: first,
            message: format!("more than {MAX_PAGES} pages"),
        })
    }
}
