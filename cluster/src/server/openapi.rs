//! The OpenAPI description of the client API, the health and metrics
//! routes and the admin routes, generated from the handlers' annotations
//! in the parent module, `server` and from kvapi's types (their JSON Schemas), so it
//! cannot drift from the code. The node serves it at
//! [`super::OPENAPI_PATH`]; `docs/openapi.json` is the same text,
//! checked in (`make openapi` rewrites it, a test keeps the two equal).
//!
//! Left out on purpose: the internal replica routes (a binary protocol
//! between nodes, see `rpc`) and the test hooks.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kvnode",
        description = "A leaderless, Dynamo-style key-value store: N=3 replicas per key, \
                       writes acknowledged by W=2, strong reads from R=2 (linearizable), eventual \
                       reads from one replica. Values are base64 in JSON; every write returns the \
                       server-assigned timestamp a session passes back as `min_timestamp` to read \
                       its own writes.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        super::put_item,
        super::get_item,
        super::delete_item,
        super::health,
        super::metrics,
        super::openapi,
        super::admin_membership,
        super::admin_leave,
        super::admin_remove,
    ),
    modifiers(&ClusterSecret),
    tags(
        (name = "items", description = "The client API: put, get, delete"),
        (name = "operations", description = "Health, metrics, this description"),
        (name = "admin", description = "Membership changes; need the cluster secret"),
    )
)]
struct ApiDoc;

/// The admin routes' `cluster_secret` scheme: the header every internal
/// and admin route checks.
struct ClusterSecret;

impl Modify for ClusterSecret {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let header = ApiKey::Header(ApiKeyValue::with_description(
            kvapi::SECRET_HEADER,
            "The cluster secret (KV_CLUSTER_SECRET); without it an admin route answers 404, as an unknown path",
        ));
        components.add_security_scheme("cluster_secret", SecurityScheme::ApiKey(header));
    }
}

/// The description as pretty JSON, ending in a newline (as checked in).
pub fn json() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_else(|error| {
        // Only our own static types go in: a failure is a programmer error.
        panic!("the API description serializes: {error}")
    });
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented path is one the router serves (the annotations
    /// carry the paths as literals, so this ties them to the constants).
    #[test]
    fn the_documented_paths_are_the_routes() {
        use crate::server::{
            HEALTH_PATH, ITEM_PATH, LEAVE_PATH, MEMBERSHIP_PATH, METRICS_PATH, OPENAPI_PATH, REMOVE_PATH,
        };
        let doc: serde_json::Value = serde_json::from_str(&json()).expect("JSON");
        let mut documented: Vec<&str> = doc["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
        documented.sort_unstable();
        let mut routes =
            vec![ITEM_PATH, HEALTH_PATH, METRICS_PATH, OPENAPI_PATH, MEMBERSHIP_PATH, LEAVE_PATH, REMOVE_PATH];
        routes.sort_unstable();
        assert_eq!(documented, routes);
        let item = &doc["paths"][ITEM_PATH];
        assert!(item["get"].is_object() && item["post"].is_object() && item["delete"].is_object());
        assert_eq!(doc["components"]["schemas"]["PutRequest"]["required"], serde_json::json!(["key", "value"]));
    }
}
