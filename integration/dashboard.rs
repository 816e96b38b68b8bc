//! `conf/grafana-dashboard.json` charts what `/metrics` serves: every metric its queries name is on the
//! page the node renders once each family has counted something, so a renamed metric breaks this test
//! rather than a panel nobody looks at.

use std::collections::BTreeSet;
use std::time::Duration;

use clusterchat::metrics::{Metrics, Now};
use serde_json::Value;

#[test]
fn the_grafana_dashboard_names_only_metrics_the_node_serves() {
    let dashboard: Value = serde_json::from_str(include_str!("../conf/grafana-dashboard.json"))
        .expect("the dashboard is JSON");
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("clusterchat_") {
                    queried.insert(word.to_owned());
                }
            }
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");

    // Families with labels show on the page once something was counted: count one of everything.
    let metrics = Metrics::default();
    metrics.request(6, 0);
    metrics.request(6, 104);
    metrics.delivered("live", 1);
    metrics.commit(1, Duration::from_millis(1));
    metrics.rate_limited();
    metrics.error("store");
    let _open = metrics.connection("websocket");
    let page = metrics.render(Now {
        users: 1,
        devices: 1,
        writers: 1,
        bus_waiting: 0,
        indexed: None,
    });
    // Sample names as they appear at the start of a line, with or without labels.
    let served: BTreeSet<&str> = page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| !served.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which /metrics does not serve:\n{page}"
    );
}
