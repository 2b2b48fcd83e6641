//! Nodes someone else started (`--system external --node URL ...`): the
//! harness runs workloads against them and checks the history, but starts,
//! stops and breaks nothing, so a run against them has no faults.

use super::{Db, DbError, NetNamespace};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WHY: &str = "the harness did not start these nodes; run without faults, or describe the store in systems/";

pub struct ExternalDb {
    /// `(n1, url)`, `(n2, url)`, ... in the order given.
    nodes: Vec<(String, String)>,
}

impl ExternalDb {
    /// Names the nodes `n1..` in the order of `urls`; each URL is the base
    /// its adapter calls (`http://host:port`, `redis://host:port`).
    pub fn new(urls: &[String]) -> Result<ExternalDb, DbError> {
        if urls.is_empty() {
            return Err(DbError::Process("an external cluster needs at least one --node URL".into()));
        }
        for url in urls {
            let rest = url.split_once("://").map(|(_, rest)| rest).unwrap_or("");
            if rest.is_empty() || rest.contains('/') || !rest.contains(':') {
                return Err(DbError::Process(format!(
                    "--node {url:?}: expected SCHEME://HOST:PORT (http://10.0.0.5:7000, redis://10.0.0.5:6379)"
                )));
            }
        }
        let nodes = urls.iter().enumerate().map(|(i, url)| (format!("n{}", i + 1), url.clone())).collect();
        Ok(ExternalDb { nodes })
    }

    fn unsupported(what: &'static str) -> DbError {
        DbError::Unsupported { backend: "external", what, why: WHY }
    }
}

impl Db for ExternalDb {
    fn backend(&self) -> &'static str {
        "external"
    }

    fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|(node, _)| node.clone()).collect()
    }

    fn base_url(&self, node: &str) -> Result<String, DbError> {
        let found = self.nodes.iter().find(|(name, _)| name == node);
        found.map(|(_, url)| url.clone()).ok_or_else(|| DbError::UnknownNode(node.to_owned()))
    }

    async fn kill(&self, _node: &str) -> Result<(), DbError> {
        Err(ExternalDb::unsupported("kill a node"))
    }

    async fn start(&self, _node: &str) -> Result<(), DbError> {
        Err(ExternalDb::unsupported("start a node"))
    }

    async fn pause(&self, _node: &str) -> Result<(), DbError> {
        Err(ExternalDb::unsupported("pause a node"))
    }

    async fn resume(&self, _node: &str) -> Result<(), DbError> {
        Err(ExternalDb::unsupported("resume a node"))
    }

    async fn net_namespace(&self, _node: &str) -> Result<NetNamespace, DbError> {
        Err(ExternalDb::unsupported("cut the network"))
    }

    fn data_dir(&self, _node: &str) -> Result<PathBuf, DbError> {
        Err(ExternalDb::unsupported("reach a node's data folder"))
    }

    async fn lose_unsynced(&self, _node: &str) -> Result<serde_json::Value, DbError> {
        Err(ExternalDb::unsupported("cut a node's power"))
    }

    fn set_fsync_delay(&self, _node: &str, _delay: Duration) -> Result<(), DbError> {
        Err(ExternalDb::unsupported("slow a node's disk"))
    }

    /// Their logs are their operator's; nothing to copy.
    async fn collect_logs(&self, _dir: &Path) -> Result<(), DbError> {
        Ok(())
    }

    /// Leaves the nodes running: they are not the harness's.
    async fn teardown(self) -> Result<(), DbError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_n1_n2_and_bad_ones_are_refused() {
        let db = ExternalDb::new(&["http://127.0.0.1:7001".into(), "redis://h:6379".into()]).unwrap();
        assert_eq!(db.nodes(), ["n1", "n2"]);
        assert_eq!(db.base_url("n2").unwrap(), "redis://h:6379");
        for bad in ["127.0.0.1:7001", "http://host", "http://h:1/api"] {
            let error = ExternalDb::new(&[bad.to_owned()]).err().unwrap().to_string();
            assert!(error.contains("SCHEME://HOST:PORT"), "{error}");
        }
        assert!(ExternalDb::new(&[]).is_err());
    }
}
