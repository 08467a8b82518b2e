//! A job: one policy on one server. [`JobId`] is its one name everywhere — the
//! timetable, the dispatcher, the state directory, the metrics and `status` — written
//! `policy@server`.

use std::fmt;
use std::sync::Arc;

use serde::de::Deserializer;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// One policy on one server.
///
/// In a record or a JSON answer it stands as three fields side by side, as the first
/// release wrote them: `"job": "policy@server"`, `"policy"` and `"server"` (put it in
/// a struct with `#[serde(flatten)]`). Reading takes `policy` and `server`.
///
/// The policy's name is shared: the jobs of a policy over ten thousand servers hold
/// one copy of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId {
    pub policy: Arc<str>,
    pub server: u64,
}

impl JobId {
    pub fn new(policy: impl Into<Arc<str>>, server: u64) -> JobId {
        JobId {
            policy: policy.into(),
            server,
        }
    }

    /// `policy@server` read back (a policy name holds no `@`).
    pub fn parse(text: &str) -> Option<JobId> {
        let (policy, server) = text.rsplit_once('@')?;
        let server = server.parse().ok()?;
        (!policy.is_empty()).then(|| JobId::new(policy, server))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.policy, self.server)
    }
}

impl Serialize for JobId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("job", &self.to_string())?;
        map.serialize_entry("policy", &*self.policy)?;
        map.serialize_entry("server", &self.server)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JobId, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            policy: String,
            server: u64,
        }
        let Fields { policy, server } = Fields::deserialize(d)?;
        Ok(JobId::new(policy, server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_named_policy_at_server_and_read_back() {
        let job = JobId::new("nightly-db", 12345);
        assert_eq!(job.to_string(), "nightly-db@12345");
        assert_eq!(JobId::parse("nightly-db@12345"), Some(job));
        for bad in ["nightly", "@1", "nightly@", "nightly@x", "nightly@-1"] {
            assert_eq!(JobId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn in_a_record_a_job_is_the_three_fields_of_the_first_release() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Record {
            #[serde(flatten)]
            job: JobId,
            ok: bool,
        }
        let r = Record {
            job: JobId::new("p", 7),
            ok: true,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"job":"p@7","policy":"p","server":7,"ok":true}"#);
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), r);
    }
}
