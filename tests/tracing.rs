//! The `tracing` spans a subscriber sees: one per create, delete, drop, rollback, member job and
//! reap, with the object, its namespace, the duration and any error as fields. Recorded by a
//! collecting subscriber layer installed once for this test binary; each test looks only at the
//! spans naming its own objects (tests run in parallel).

mod common;

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex, OnceLock},
};

use common::*;
use netns_kit::{Bridge, MemberSpec, Namespace, VethPair, bridged};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{
    Layer,
    layer::{Context, SubscriberExt},
    registry::LookupSpan,
    util::SubscriberInitExt,
};

/// A closed span: its name, target, level and fields.
#[derive(Clone, Debug, Default)]
struct Closed {
    name: &'static str,
    target: String,
    level: String,
    fields: BTreeMap<String, String>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Closed>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Collect {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        let mut closed = Closed {
            name: meta.name(),
            target: meta.target().to_owned(),
            level: meta.level().to_string(),
            fields: BTreeMap::new(),
        };
        attrs.record(&mut Fields(&mut closed.fields));
        ctx.span(id).unwrap().extensions_mut().insert(closed);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(closed) = span.extensions_mut().get_mut::<Closed>()
        {
            values.record(&mut Fields(&mut closed.fields));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && let Some(closed) = span.extensions_mut().remove::<Closed>()
        {
            self.0.lock().unwrap().push(closed);
        }
    }
}

/// Every span closed so far, in this test binary.
fn spans() -> Vec<Closed> {
    static COLLECT: OnceLock<Collect> = OnceLock::new();
    COLLECT
        .get_or_init(|| {
            let collect = Collect::default();
            tracing_subscriber::registry().with(collect.clone()).init();
            collect
        })
        .0
        .lock()
        .unwrap()
        .clone()
}

/// The closed spans named `name` whose `object` mentions `needle`.
fn find(name: &str, needle: &str) -> Vec<Closed> {
    spans()
        .into_iter()
        .filter(|s| s.name == name && s.fields.get("object").is_some_and(|o| o.contains(needle)))
        .collect()
}

fn field<'a>(span: &'a Closed, name: &str) -> &'a str {
    span.fields
        .get(name)
        .unwrap_or_else(|| panic!("span {span:?} has no {name}"))
}

#[tokio::test]
async fn create_and_delete_are_spans_with_object_namespace_and_duration() {
    spans();
    let host = Namespace::builder()
        .name("trace-host-1")
        .create()
        .await
        .unwrap();
    let br = Bridge::builder("trbr1")
        .namespace(&host)
        .create()
        .await
        .unwrap();
    br.delete().await.unwrap();

    let created = find("create", "trbr1");
    assert_eq!(created.len(), 1, "{created:?}");
    let c = &created[0];
    assert_eq!(
        (c.target.as_str(), c.level.as_str()),
        ("netns_kit::link::bridge", "DEBUG")
    );
    // Routine work stays below an application's default `INFO` filter.
    let loud: Vec<_> = spans()
        .into_iter()
        .filter(|s| s.target.starts_with("netns_kit") && s.level != "DEBUG")
        .collect();
    assert!(loud.is_empty(), "spans above DEBUG: {loud:?}");
    assert_eq!(field(c, "kind"), "bridge");
    assert!(field(c, "netns").contains("trace-host-1"), "{c:?}");
    assert!(field(c, "elapsed_us").parse::<u64>().is_ok(), "{c:?}");
    assert!(!c.fields.contains_key("error"), "{c:?}");

    let deleted = find("delete", "trbr1");
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(field(&deleted[0], "kind"), "bridge");
    assert!(field(&deleted[0], "elapsed_us").parse::<u64>().is_ok());
    // Deleted explicitly: its Drop has nothing left to do.
    assert!(find("drop", "trbr1").is_empty());
    host.delete().await.unwrap();
}

#[tokio::test]
async fn a_dropped_guard_is_a_drop_span() {
    spans();
    let host = sandbox().await;
    let veth = VethPair::builder("trv2a", "trv2b")
        .namespace(&host)
        .create()
        .await
        .unwrap();
    drop(veth);
    assert_eq!(link_names(&host), ["lo"]);
    let dropped = find("drop", "trv2a");
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(field(&dropped[0], "kind"), "veth");
}

#[tokio::test]
async fn a_failed_create_records_its_error_and_its_rollback() {
    spans();
    let (a, b) = (sandbox().await, sandbox().await);
    // IPv6 off in b: the peer's address is refused after the pair exists, which is rolled back.
    b.set_sysctl("net.ipv6.conf.all.disable_ipv6", "1")
        .await
        .unwrap();
    let err = VethPair::builder("trv3a", "trv3b")
        .namespace(&a)
        .peer_namespace(&b)
        .peer_address("fd08::2/64")
        .create()
        .await
        .unwrap_err();
    assert_eq!(link_names(&a), ["lo"]);
    let created = find("create", "trv3a");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(field(&created[0], "error"), err.to_string());
    let rolled = find("rollback", "trv3a");
    assert_eq!(rolled.len(), 1, "{:?}", spans());
    // The pair's first end, which holds both.
    assert_eq!(field(&rolled[0], "kind"), "link");
}

#[tokio::test]
async fn member_jobs_and_reap_are_spans() {
    spans();
    let host = sandbox().await;
    let net = bridged()
        .host(&host)
        .bridge_name("trbr4")
        .gateway("10.44.0.254/24")
        .member(MemberSpec::new().address("10.44.0.1/24"))
        .member(MemberSpec::new().address("10.44.0.2/24"))
        .create()
        .await
        .unwrap();
    drop(net);
    // The network's span, and its bridge's inside it.
    let created = find("create", "trbr4");
    let kinds: Vec<&str> = created.iter().map(|s| field(s, "kind")).collect();
    assert_eq!(kinds, ["bridge", "bridged network"], "{created:?}");
    let members: Vec<_> = spans()
        .into_iter()
        .filter(|s| {
            s.name == "member"
                && s.fields
                    .get("object")
                    .is_some_and(|o| o.contains("10.44.0."))
        })
        .collect();
    assert_eq!(members.len(), 2, "{members:?}");
    netns_kit::reap(&host).await.unwrap();
    let host_label = host.to_string();
    assert!(
        spans().iter().any(|s| s.name == "reap"
            && s.fields
                .get("netns")
                .is_some_and(|n| host_label.contains(n.as_str()) || n.contains(&host_label))),
        "{:?}",
        spans()
            .iter()
            .filter(|s| s.name == "reap")
            .collect::<Vec<_>>()
    );
}
