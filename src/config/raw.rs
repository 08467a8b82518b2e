//! The configuration file exactly as written: serde structures with the position of
//! every value, so that validation can point at file, line and column.

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub defaults: RawPolicyKeys,
    #[serde(default)]
    pub policy: Vec<Spanned<RawPolicy>>,
    #[serde(default)]
    pub notify: RawNotify,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub webhook_url: S<String>,
    pub command: S<Vec<Spanned<String>>>,
    pub timeout: S<String>,
    pub max_attempts: S<i64>,
    pub retry_backoff: S<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub base_url: S<String>,
    pub token_file: S<String>,
    pub token_env: S<String>,
    pub request_timeout: S<String>,
    pub max_attempts: S<i64>,
    pub retry_backoff: S<String>,
    pub snapshot_cap: S<i64>,
    pub max_requests_per_second: S<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub state_dir: S<String>,
    pub max_concurrent_jobs: S<i64>,
    pub shutdown_timeout: S<String>,
    pub metrics_file: S<String>,
}

/// The keys a `[[policy]]` shares with `[defaults]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyKeys {
    pub timezone: S<String>,
    pub keep: S<RawKeep>,
    pub stop_server: S<bool>,
    pub snapshot_name: S<String>,
    pub poll_interval: S<String>,
    pub wait_timeout: S<String>,
    pub stop_timeout: S<String>,
    pub catch_up: S<bool>,
    pub pre_snapshot: S<Vec<Spanned<String>>>,
    pub post_snapshot: S<Vec<Spanned<String>>>,
    pub hook_timeout: S<String>,
    pub ping_url: S<String>,
}

/// `keep = 3`, or `keep = { daily = 2, weekly = 2 }` (tier names are checked in
/// `keys.rs`, the values in `checks::keep`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawKeep {
    Newest(i64),
    Tiers(std::collections::BTreeMap<String, i64>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: Spanned<String>,
    pub servers: Spanned<RawServers>,
    pub schedule: Spanned<String>,
    pub description: S<String>,
    // The shared keys again: serde's `flatten` does not combine with
    // `deny_unknown_fields`, so they are listed here as in `RawPolicyKeys`.
    pub timezone: S<String>,
    pub keep: S<RawKeep>,
    pub stop_server: S<bool>,
    pub snapshot_name: S<String>,
    pub poll_interval: S<String>,
    pub wait_timeout: S<String>,
    pub stop_timeout: S<String>,
    pub catch_up: S<bool>,
    pub pre_snapshot: S<Vec<Spanned<String>>>,
    pub post_snapshot: S<Vec<Spanned<String>>>,
    pub hook_timeout: S<String>,
    pub ping_url: S<String>,
}

/// `servers` as written: a list of ids and names (globs among them), or one text
/// (`"all"`; anything else is refused by `checks::servers`).
#[derive(Debug, Clone)]
pub enum RawServers {
    Text(String),
    List(Vec<Spanned<RawServer>>),
}

/// One entry of a `servers` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawServer {
    Id(i64),
    Name(String),
}

// By hand, not `#[serde(untagged)]`: an untagged enum buffers its value, which loses
// the position `Spanned` reads from the TOML deserializer.
impl<'de> Deserialize<'de> for RawServers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawServers, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawServers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of server ids and names, or \"all\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawServers, E> {
                Ok(RawServers::Text(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawServers, A::Error> {
                let mut list = Vec::new();
                while let Some(item) = seq.next_element()? {
                    list.push(item);
                }
                Ok(RawServers::List(list))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl<'de> Deserialize<'de> for RawServer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawServer, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawServer;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a server id or name")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawServer, E> {
                Ok(RawServer::Id(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawServer, E> {
                i64::try_from(v)
                    .map(RawServer::Id)
                    .map_err(|_| E::custom("a server id too large"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawServer, E> {
                Ok(RawServer::Name(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}
