#![allow(clippy::unwrap_used)]
//! The fake Kubernetes API server, driven the way the controller and kubectl drive a real one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use quire_crds::{ReportFormat, ReportRequest, ReportRequestSpec, ReportType};
use quire_testing::kube_api::{FakeApiServer, Kubectl, ObjectStore};
use serde_json::{Value, json};

const USER: &str = "01a1ff2b-b9b1-7396-94ba-d136c07eec06";

/// Fails the test if `body` takes longer than 30 s (a missing event would hang forever).
async fn within<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), body)
        .await
        .expect("the test finished within 30 s")
}

fn report_request(name: &str) -> ReportRequest {
    ReportRequest::new(
        name,
        ReportRequestSpec {
            report_id: None,
            user_id: USER.to_owned(),
            report_type: ReportType::Profile,
            format: ReportFormat::Pdf,
            parameters: json!({}),
            ttl_seconds_after_finished: None,
            suspend: false,
        },
    )
}

fn api_error(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

fn rr_api(server: &FakeApiServer) -> Api<ReportRequest> {
    Api::default_namespaced(server.client())
}

#[tokio::test]
async fn create_get_list_and_a_second_create_is_already_exists() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        let created = api
            .create(&PostParams::default(), &report_request("ada"))
            .await
            .unwrap();
        assert_eq!(created.metadata.generation, Some(1));
        assert!(created.metadata.uid.is_some());
        assert!(created.metadata.creation_timestamp.is_some());
        assert_eq!(created.namespace().as_deref(), Some("default"));
        assert_eq!(created.spec.parameters, json!({}));

        let fetched = api.get("ada").await.unwrap();
        assert_eq!(fetched.resource_version(), created.resource_version());

        let err = api_error(
            api.create(&PostParams::default(), &report_request("ada"))
                .await
                .unwrap_err(),
        );
        assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
        assert_eq!(
            err.message,
            "reportrequests.quire.dev \"ada\" already exists"
        );

        let mut generated = report_request("");
        generated.metadata.name = None;
        generated.metadata.generate_name = Some("gen-".to_owned());
        let generated = api
            .create(&PostParams::default(), &generated)
            .await
            .unwrap();
        assert!(generated.name_any().starts_with("gen-"));
        assert_eq!(generated.name_any().len(), "gen-".len() + 5);

        let list = api.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), 2);
        assert_eq!(
            list.metadata.resource_version,
            Some(server.store().resource_version().to_string())
        );
        let all: Api<ReportRequest> = Api::all(server.client());
        assert_eq!(
            all.list(&ListParams::default()).await.unwrap().items.len(),
            2
        );

        let err = api_error(api.get("nobody").await.unwrap_err());
        assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
        let elsewhere: Api<ReportRequest> = Api::namespaced(server.client(), "missing");
        let err = api_error(
            elsewhere
                .create(&PostParams::default(), &report_request("x"))
                .await
                .unwrap_err(),
        );
        assert_eq!(err.message, "namespaces \"missing\" not found");
    })
    .await;
}

#[tokio::test]
async fn lists_filter_by_labels_and_names_and_page_with_continue_tokens() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        for (name, tier) in [
            ("a", "gold"),
            ("b", "silver"),
            ("c", "gold"),
            ("d", "bronze"),
        ] {
            let mut rr = report_request(name);
            rr.labels_mut().insert("tier".to_owned(), tier.to_owned());
            api.create(&PostParams::default(), &rr).await.unwrap();
        }
        let names = |list: kube::core::ObjectList<ReportRequest>| -> Vec<String> {
            list.items.iter().map(ResourceExt::name_any).collect()
        };
        let gold = api
            .list(&ListParams::default().labels("tier=gold"))
            .await
            .unwrap();
        assert_eq!(names(gold), ["a", "c"]);
        let some = api
            .list(&ListParams::default().labels("tier in (silver,bronze)"))
            .await
            .unwrap();
        assert_eq!(names(some), ["b", "d"]);
        let none = api
            .list(&ListParams::default().labels("!tier"))
            .await
            .unwrap();
        assert!(none.items.is_empty());
        let by_name = api
            .list(&ListParams::default().fields("metadata.name=c"))
            .await
            .unwrap();
        assert_eq!(names(by_name), ["c"]);

        let first = api.list(&ListParams::default().limit(3)).await.unwrap();
        let token = first.metadata.continue_.clone().unwrap();
        assert_eq!(first.metadata.remaining_item_count, Some(1));
        let list_rv = first.metadata.resource_version.clone();
        assert_eq!(names(first), ["a", "b", "c"]);
        let second = api
            .list(&ListParams::default().limit(3).continue_token(&token))
            .await
            .unwrap();
        assert_eq!(second.metadata.continue_, None);
        assert_eq!(second.metadata.resource_version, list_rv);
        assert_eq!(names(second), ["d"]);

        api.create(&PostParams::default(), &report_request("e"))
            .await
            .unwrap();
        server.store().compact();
        let err = api_error(
            api.list(&ListParams::default().limit(3).continue_token(&token))
                .await
                .unwrap_err(),
        );
        assert_eq!(err.code, 410);
    })
    .await;
}

#[tokio::test]
async fn a_watch_from_a_resource_version_sees_later_changes_in_order() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        api.create(&PostParams::default(), &report_request("before"))
            .await
            .unwrap();
        let rv = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        let mut stream = api
            .watch(&WatchParams::default().timeout(20), &rv)
            .await
            .unwrap()
            .boxed();

        api.create(&PostParams::default(), &report_request("ada"))
            .await
            .unwrap();
        api.patch(
            "ada",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"seen": "yes"}}})),
        )
        .await
        .unwrap();
        api.delete("ada", &DeleteParams::default()).await.unwrap();

        let mut seen = Vec::new();
        while seen.len() < 3 {
            match stream.try_next().await.unwrap().unwrap() {
                WatchEvent::Added(o) => seen.push(("ADDED", o.name_any(), o.labels().len())),
                WatchEvent::Modified(o) => seen.push(("MODIFIED", o.name_any(), o.labels().len())),
                WatchEvent::Deleted(o) => seen.push(("DELETED", o.name_any(), o.labels().len())),
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(e) => panic!("watch error {e:?}"),
            }
        }
        assert_eq!(
            seen,
            [
                ("ADDED", "ada".to_owned(), 0),
                ("MODIFIED", "ada".to_owned(), 1),
                ("DELETED", "ada".to_owned(), 1)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_gets_410_gone() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        let old = api
            .create(&PostParams::default(), &report_request("ada"))
            .await
            .unwrap()
            .resource_version()
            .unwrap();
        api.create(&PostParams::default(), &report_request("bob"))
            .await
            .unwrap();
        server.store().set_history_limit(0);
        let mut stream = api
            .watch(&WatchParams::default(), &old)
            .await
            .unwrap()
            .boxed();
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Error(e) => {
                assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
                assert!(
                    e.message.starts_with("too old resource version"),
                    "{}",
                    e.message
                );
            }
            other => panic!("expected a 410 ERROR event, got {other:?}"),
        }
        assert!(
            stream.try_next().await.unwrap().is_none(),
            "the stream ends"
        );
    })
    .await;
}

#[tokio::test]
async fn spec_patches_bump_generation_and_status_patches_only_change_status() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        api.create(&PostParams::default(), &report_request("ada"))
            .await
            .unwrap();

        let patched = api
            .patch(
                "ada",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"suspend": true}, "status": {"phase": "Running"}})),
            )
            .await
            .unwrap();
        assert!(patched.spec.suspend);
        assert_eq!(patched.metadata.generation, Some(2));
        assert_eq!(patched.status, None, "the main resource ignores status");

        let status = api
            .patch_status(
                "ada",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running", "progress": 40}, "spec": {"suspend": false}})),
            )
            .await
            .unwrap();
        assert_eq!(status.metadata.generation, Some(2));
        assert!(status.spec.suspend, "the status subresource ignores spec");
        let st = status.status.clone().unwrap();
        assert_eq!((st.progress, st.attempts), (40, 0), "defaults apply");

        let labelled = api
            .patch(
                "ada",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
            )
            .await
            .unwrap();
        assert_eq!(labelled.metadata.generation, Some(2), "metadata changes keep generation");

        let rv = labelled.resource_version();
        let same = api
            .patch(
                "ada",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
            )
            .await
            .unwrap();
        assert_eq!(same.resource_version(), rv, "a no-op write changes nothing");

        let json_patched = api
            .patch(
                "ada",
                &PatchParams::default(),
                &Patch::Json::<()>(serde_json::from_value(json!([
                    {"op": "test", "path": "/spec/suspend", "value": true},
                    {"op": "replace", "path": "/spec/suspend", "value": false}
                ])).unwrap()),
            )
            .await
            .unwrap();
        assert!(!json_patched.spec.suspend);
        let err = api_error(
            api.patch(
                "ada",
                &PatchParams::default(),
                &Patch::Json::<()>(serde_json::from_value(json!([
                    {"op": "test", "path": "/spec/suspend", "value": true}
                ])).unwrap()),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(err.code, 422);

        let err = api_error(
            api.patch(
                "ada",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"suspend": true}})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!((err.code, err.reason.as_str()), (415, "UnsupportedMediaType"));

        let err = api_error(
            api.patch(
                "ada",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "spec": {"suspend": true}})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));

        let mut stale = json_patched.clone();
        stale.metadata.resource_version = rv;
        let err = api_error(api.replace("ada", &PostParams::default(), &stale).await.unwrap_err());
        assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
        let mut fresh = json_patched.clone();
        fresh.spec.ttl_seconds_after_finished = Some(60);
        let replaced = api.replace("ada", &PostParams::default(), &fresh).await.unwrap();
        assert_eq!(replaced.spec.ttl_seconds_after_finished, Some(60));
        assert_eq!(replaced.metadata.generation, Some(4));
        assert_eq!(replaced.status.unwrap().progress, 40, "status survives a replace");
    })
    .await;
}

#[tokio::test]
async fn server_side_apply_creates_then_merges() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        let params = PatchParams::apply("quire-test").force();
        let applied = api
            .patch("ada", &params, &Patch::Apply(report_request("ada")))
            .await
            .unwrap();
        assert_eq!(applied.metadata.generation, Some(1));
        let merged = api
            .patch(
                "ada",
                &params,
                &Patch::Apply(json!({
                    "apiVersion": "quire.dev/v1alpha1",
                    "kind": "ReportRequest",
                    "metadata": {"name": "ada", "labels": {"owner": "test"}},
                    "spec": {"ttlSecondsAfterFinished": 30},
                })),
            )
            .await
            .unwrap();
        assert_eq!(merged.spec.user_id, USER, "fields not applied are kept");
        assert_eq!(merged.spec.ttl_seconds_after_finished, Some(30));
        assert_eq!(
            merged.labels().get("owner").map(String::as_str),
            Some("test")
        );

        let status = api
            .patch_status(
                "ada",
                &params,
                &Patch::Apply(json!({
                    "apiVersion": "quire.dev/v1alpha1",
                    "kind": "ReportRequest",
                    "status": {"phase": "Queued"},
                })),
            )
            .await
            .unwrap();
        assert_eq!(
            status.status.unwrap().phase,
            Some(quire_crds::report_request::Phase::Queued)
        );

        let err = api_error(
            api.patch(
                "ada",
                &PatchParams::apply("quire-test"),
                &Patch::Apply(json!({
                    "apiVersion": "quire.dev/v1alpha1",
                    "kind": "ReportRequest",
                    "metadata": {"name": "ada", "resourceVersion": "1"},
                })),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(err.code, 409);
        let applies = server
            .requests()
            .into_iter()
            .filter(|r| r.content_type.as_deref() == Some("application/apply-patch+yaml"))
            .count();
        assert_eq!(applies, 4);
    })
    .await;
}

#[tokio::test]
async fn deleting_an_object_with_a_finalizer_waits_until_the_finalizer_is_removed() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        let mut rr = report_request("ada");
        rr.metadata.finalizers = Some(vec!["quire.dev/cleanup".to_owned()]);
        api.create(&PostParams::default(), &rr).await.unwrap();

        let deleted = api.delete("ada", &DeleteParams::default()).await.unwrap();
        let deleting = deleted
            .left()
            .expect("a pending deletion answers the object");
        assert!(deleting.metadata.deletion_timestamp.is_some());
        assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(0));
        assert_eq!(deleting.metadata.generation, Some(2));
        assert!(api.get("ada").await.is_ok(), "still there");

        let err = api_error(
            api.patch(
                "ada",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["quire.dev/cleanup", "other"]}})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
        assert!(
            err.message.contains("no new finalizers can be added"),
            "{}",
            err.message
        );

        api.patch(
            "ada",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
        let err = api_error(api.get("ada").await.unwrap_err());
        assert_eq!(err.code, 404);

        api.create(&PostParams::default(), &report_request("bob"))
            .await
            .unwrap();
        let gone = api.delete("bob", &DeleteParams::default()).await.unwrap();
        let status = gone
            .right()
            .expect("an immediate deletion answers a Status");
        assert!(status.is_success());
        assert!(api.get("bob").await.is_err());
    })
    .await;
}

#[tokio::test]
async fn identity_fields_are_immutable_and_the_schema_is_enforced() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        api.create(&PostParams::default(), &report_request("ada"))
            .await
            .unwrap();
        let err = api_error(
            api.patch(
                "ada",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"format": "csv"}})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
        assert_eq!(
            err.message,
            "ReportRequest.quire.dev \"ada\" is invalid: spec.format: Invalid value: \"string\": format is immutable"
        );
        // Setting a field that was absent is no transition: allowed.
        api.patch(
            "ada",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"reportId": "0190d7a2-0c8e-7b4a-9d6e-1f2a3b4c5d6e"}})),
        )
        .await
        .unwrap();

        let dynamic: Api<kube::api::DynamicObject> = Api::default_namespaced_with(
            server.client(),
            &kube::api::ApiResource::erase::<ReportRequest>(&()),
        );
        let bad: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "quire.dev/v1alpha1",
            "kind": "ReportRequest",
            "metadata": {"name": "bad"},
            "spec": {"userId": "not-a-uuid", "reportType": "spreadsheet", "unknown": 1},
        }))
        .unwrap();
        let err = api_error(dynamic.create(&PostParams::default(), &bad).await.unwrap_err());
        assert_eq!(err.code, 422);
        for expected in [
            "spec.userId: Invalid value: \"not-a-uuid\"",
            "spec.reportType: Unsupported value: \"spreadsheet\"",
            "spec.format: Required value",
        ] {
            assert!(err.message.contains(expected), "{expected} in {}", err.message);
        }

        let mut wrong_kind = bad.clone();
        wrong_kind.types.as_mut().unwrap().kind = "Other".to_owned();
        let err = api_error(dynamic.create(&PostParams::default(), &wrong_kind).await.unwrap_err());
        assert_eq!(err.code, 422);

        let pruned: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "quire.dev/v1alpha1",
            "kind": "ReportRequest",
            "metadata": {"name": "pruned"},
            "spec": {"userId": USER, "reportType": "profile", "format": "pdf", "unknown": 1},
        }))
        .unwrap();
        let created = dynamic.create(&PostParams::default(), &pruned).await.unwrap();
        assert_eq!(created.data["spec"].get("unknown"), None, "unknown fields are pruned");
    })
    .await;
}

#[tokio::test]
async fn leases_refuse_a_stale_resource_version() {
    within(async {
        let server = FakeApiServer::start().await;
        let leases: Api<Lease> = Api::default_namespaced(server.client());
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": "quire-controller"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
        }))
        .unwrap();
        let first = leases.create(&PostParams::default(), &lease).await.unwrap();
        let mut mine = first.clone();
        mine.spec.as_mut().unwrap().holder_identity = Some("b".to_owned());
        let taken = leases
            .replace("quire-controller", &PostParams::default(), &mine)
            .await
            .unwrap();
        assert_eq!(taken.spec.unwrap().holder_identity.as_deref(), Some("b"));

        let mut theirs = first.clone();
        theirs.spec.as_mut().unwrap().holder_identity = Some("c".to_owned());
        let err = api_error(
            leases
                .replace("quire-controller", &PostParams::default(), &theirs)
                .await
                .unwrap_err(),
        );
        assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
        let err = api_error(
            leases
                .patch(
                    "quire-controller",
                    &PatchParams::default(),
                    &Patch::Merge(json!({
                        "metadata": {"resourceVersion": first.resource_version()},
                        "spec": {"holderIdentity": "c"},
                    })),
                )
                .await
                .unwrap_err(),
        );
        assert_eq!(err.code, 409);
        let strategic = leases
            .patch(
                "quire-controller",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"leaseTransitions": 1}})),
            )
            .await
            .unwrap();
        assert_eq!(strategic.spec.unwrap().lease_transitions, Some(1));
    })
    .await;
}

#[tokio::test]
async fn injected_failures_answer_the_next_matching_requests() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        api.create(&PostParams::default(), &report_request("ada"))
            .await
            .unwrap();
        server.fail_next("PATCH", "/reportrequests/ada/status", 2, 500);
        let patch = Patch::Merge(json!({"status": {"phase": "Running"}}));
        for _ in 0..2 {
            let err = api_error(
                api.patch_status("ada", &PatchParams::default(), &patch)
                    .await
                    .unwrap_err(),
            );
            assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
        }
        api.get("ada").await.unwrap();
        api.patch_status("ada", &PatchParams::default(), &patch)
            .await
            .unwrap();

        server.fail_next("", "/reportrequests", 1, 409);
        let err = api_error(api.get("ada").await.unwrap_err());
        assert_eq!(err.code, 409);

        let statuses: Vec<(String, u16)> = server
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/status"))
            .map(|r| (r.method.clone(), r.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("PATCH".to_owned(), 500),
                ("PATCH".to_owned(), 500),
                ("PATCH".to_owned(), 200)
            ]
        );
        assert_eq!(server.count_requests("PATCH", "/status"), 3);
        assert_eq!(server.count_requests("post", "/reportrequests"), 1);
    })
    .await;
}

async fn next_event<S>(events: &mut S) -> watcher::Event<ReportRequest>
where
    S: futures::Stream<Item = watcher::Result<watcher::Event<ReportRequest>>> + Unpin,
{
    events
        .try_next()
        .await
        .unwrap()
        .expect("the watcher goes on")
}

fn describe(event: &watcher::Event<ReportRequest>) -> String {
    match event {
        watcher::Event::Init => "Init".to_owned(),
        watcher::Event::InitApply(o) => format!("InitApply {}", o.name_any()),
        watcher::Event::InitDone => "InitDone".to_owned(),
        watcher::Event::Apply(o) => format!("Apply {}", o.name_any()),
        watcher::Event::Delete(o) => format!("Delete {}", o.name_any()),
    }
}

#[tokio::test]
async fn the_kube_runtime_watcher_lists_then_watches_and_relists_after_410() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        api.create(&PostParams::default(), &report_request("ada"))
            .await
            .unwrap();
        let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(describe(&next_event(&mut events).await));
        }
        assert_eq!(seen, ["Init", "InitApply ada", "InitDone"]);

        api.create(&PostParams::default(), &report_request("bob"))
            .await
            .unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(3), next_event(&mut events)).await;
        if ev.is_err() {
            for r in server.requests() {
                eprintln!("{} {} {}", r.method, r.path_and_query(), r.status);
            }
        }
        assert_eq!(describe(&ev.unwrap()), "Apply bob");
        api.delete("bob", &DeleteParams::default()).await.unwrap();
        assert_eq!(describe(&next_event(&mut events).await), "Delete bob");

        // An apiserver restart that lost the watch history: the watcher gets 410 and re-lists.
        server.store().set_history_limit(0);
        server.close_watches();
        api.create(&PostParams::default(), &report_request("cy"))
            .await
            .unwrap();
        let mut relisted = Vec::new();
        loop {
            match events.try_next().await {
                Ok(Some(event)) => {
                    relisted.push(describe(&event));
                    if matches!(event, watcher::Event::InitDone) {
                        break;
                    }
                }
                Ok(None) => panic!("the watcher stream ended"),
                Err(_) => {} // the 410 is reported, then the watcher re-lists
            }
        }
        assert_eq!(
            relisted,
            ["Init", "InitApply ada", "InitApply cy", "InitDone"]
        );
        let lists = server
            .requests()
            .iter()
            .filter(|r| !r.is_watch() && r.method == "GET" && r.path.ends_with("/reportrequests"))
            .count();
        assert_eq!(lists, 2);
        let first_list = server
            .requests()
            .into_iter()
            .find(|r| r.param("limit").is_some())
            .unwrap();
        assert_eq!(first_list.param("limit"), Some("500"));
    })
    .await;
}

#[tokio::test]
async fn the_watcher_can_use_streaming_lists() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        api.create(&PostParams::default(), &report_request("ada"))
            .await
            .unwrap();
        let config = watcher::Config::default().streaming_lists();
        let mut events = watcher(api.clone(), config).boxed();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(describe(&next_event(&mut events).await));
        }
        assert_eq!(seen, ["Init", "InitApply ada", "InitDone"]);
        api.create(&PostParams::default(), &report_request("bob"))
            .await
            .unwrap();
        assert_eq!(describe(&next_event(&mut events).await), "Apply bob");
        let watch = server
            .requests()
            .into_iter()
            .find(|r| r.is_watch())
            .unwrap();
        assert_eq!(watch.param("sendInitialEvents"), Some("true"));
        assert_eq!(watch.param("resourceVersionMatch"), Some("NotOlderThan"));
    })
    .await;
}

#[tokio::test]
async fn the_event_recorder_creates_then_patches_a_series() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        let rr = api
            .create(&PostParams::default(), &report_request("ada"))
            .await
            .unwrap();
        let recorder = Recorder::new(
            server.client(),
            Reporter {
                controller: "quire-controller".to_owned(),
                instance: None,
            },
        );
        let event = Event {
            type_: EventType::Normal,
            reason: "Dispatched".to_owned(),
            note: Some("queued".to_owned()),
            action: "Dispatch".to_owned(),
            secondary: None,
        };
        let reference = rr.object_ref(&());
        recorder.publish(&event, &reference).await.unwrap();
        recorder.publish(&event, &reference).await.unwrap();
        let events: Api<K8sEvent> = Api::default_namespaced(server.client());
        let list = events.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), 1);
        assert_eq!(list.items[0].series.as_ref().map(|s| s.count), Some(2));
        assert_eq!(list.items[0].reason.as_deref(), Some("Dispatched"));
        assert_eq!(
            server.count_requests("POST", "/apis/events.k8s.io/v1/namespaces/default/events"),
            1
        );
        assert_eq!(
            server.count_requests("PATCH", "/apis/events.k8s.io/v1/namespaces/default/events/"),
            1
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_with_a_finalizer_reconciles_and_cleans_up() {
    use kube::runtime::controller::{Action, Controller};
    use kube::runtime::finalizer::{Event as Finalizer, finalizer};

    #[derive(Debug)]
    struct Failed(kube::Error);
    impl std::fmt::Display for Failed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "reconcile failed: {}", self.0)
        }
    }
    impl std::error::Error for Failed {}

    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        let cleaned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let reconcile = {
            let api = api.clone();
            let cleaned = cleaned.clone();
            move |rr: Arc<ReportRequest>, _ctx: Arc<()>| {
                let api = api.clone();
                let cleaned = cleaned.clone();
                async move {
                    finalizer(&api, "quire.dev/cleanup", rr, |event| async {
                        match event {
                            Finalizer::Apply(rr) => {
                                let patch = Patch::Merge(json!({"status": {"phase": "Queued"}}));
                                api.patch_status(&rr.name_any(), &PatchParams::default(), &patch)
                                    .await
                                    .map_err(Failed)?;
                                Ok::<_, Failed>(Action::await_change())
                            }
                            Finalizer::Cleanup(_) => {
                                cleaned.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                Ok(Action::await_change())
                            }
                        }
                    })
                    .await
                }
            }
        };
        let controller = tokio::spawn(
            Controller::new(api.clone(), watcher::Config::default())
                .run(
                    reconcile,
                    |_: Arc<ReportRequest>,
                     _: &kube::runtime::finalizer::Error<Failed>,
                     _: Arc<()>| { Action::requeue(Duration::from_millis(50)) },
                    Arc::new(()),
                )
                .for_each(|_| async {}),
        );

        api.create(&PostParams::default(), &report_request("ada"))
            .await
            .unwrap();
        loop {
            let rr = api.get("ada").await.unwrap();
            if rr.status.as_ref().and_then(|s| s.phase).is_some() {
                assert_eq!(rr.finalizers(), ["quire.dev/cleanup"]);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        api.delete("ada", &DeleteParams::default()).await.unwrap();
        while api.get_opt("ada").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(cleaned.load(std::sync::atomic::Ordering::SeqCst), 1);
        controller.abort();
    })
    .await;
}

#[tokio::test]
async fn the_store_outlives_a_server_and_restart_keeps_the_port() {
    within(async {
        let server = FakeApiServer::start().await;
        rr_api(&server)
            .create(&PostParams::default(), &report_request("ada"))
            .await
            .unwrap();
        let store: ObjectStore = server.stop().await;
        let mut second = FakeApiServer::start_with(store).await;
        let api = rr_api(&second);
        assert_eq!(api.get("ada").await.unwrap().name_any(), "ada");

        let url = second.url();
        second.restart().await.unwrap();
        assert_eq!(second.url(), url);
        api.get("ada").await.unwrap();

        let stored: ReportRequest = second.store().get_typed(Some("default"), "ada").unwrap();
        assert_eq!(stored.spec.user_id, USER);
        let modified = second
            .store()
            .modify_value("quire.dev", "reportrequests", Some("default"), "ada", |o| {
                o["status"] = json!({"phase": "Failed"});
            })
            .unwrap();
        assert_eq!(modified["status"]["phase"], "Failed");
        assert_eq!(second.store().list_typed::<ReportRequest>(None).len(), 1);
        assert!(
            second
                .store()
                .all_objects()
                .iter()
                .any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == "default")
        );
    })
    .await;
}

// ----- kubectl -----

fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_prints_the_printer_columns_and_wait_sees_ready() {
    within(async {
        let server = FakeApiServer::start().await;
        let api = rr_api(&server);
        api.create(&PostParams::default(), &report_request("ada"))
            .await
            .unwrap();
        api.patch_status(
            "ada",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "progress": 40, "attempts": 1}})),
        )
        .await
        .unwrap();
        let kubectl = Kubectl::for_server(&server);

        let (ok, out, err) = kubectl.run(&["get", "reportrequests"]).await;
        assert!(ok, "kubectl get failed: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            columns(lines[0]),
            ["NAME", "TYPE", "FORMAT", "PHASE", "PROGRESS", "AGE"],
            "{out}"
        );
        let row = columns(lines[1]);
        assert_eq!(
            row[..5],
            ["ada", "profile", "pdf", "Running", "40"],
            "{out}"
        );
        assert!(row[5].ends_with('s'), "age like 0s: {out}");

        let (ok, out, err) = kubectl.run(&["get", "rr", "-o", "wide"]).await;
        assert!(ok, "kubectl get -o wide failed: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            columns(lines[0]),
            [
                "NAME", "TYPE", "FORMAT", "PHASE", "PROGRESS", "AGE", "USER", "ATTEMPTS"
            ],
            "{out}"
        );
        let row = columns(lines[1]);
        assert_eq!(row[0], "ada");
        assert_eq!(row[6..], [USER, "1"], "{out}");

        let (ok, out, err) = kubectl.run(&["get", "rr", "ada", "-o", "json"]).await;
        assert!(ok, "kubectl get -o json failed: {err}");
        let obj: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(obj["spec"]["userId"], USER);

        let tables = server
            .requests()
            .iter()
            .filter(|r| r.accept.as_deref().is_some_and(|a| a.contains("as=Table")))
            .count();
        assert!(tables >= 2, "kubectl asked for Tables");

        let waiter = {
            let kubectl_args = ["wait", "--for=condition=Ready", "rr/ada", "--timeout=10s"];
            let kubectl = &kubectl;
            async move { kubectl.run(&kubectl_args).await }
        };
        let set_ready = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            api.patch_status(
                "ada",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"phase": "Completed", "progress": 100, "conditions": [{
                        "type": "Ready", "status": "True", "reason": "Completed", "message": "done",
                        "lastTransitionTime": "2025-01-01T00:00:00Z"
                    }]}}),
                ),
            )
            .await
            .unwrap();
        };
        let ((ok, out, err), ()) = tokio::join!(waiter, set_ready);
        assert!(ok, "kubectl wait failed: {out} {err}");
        assert!(out.contains("condition met"), "{out}");
        let watched = server
            .requests()
            .into_iter()
            .any(|r| r.is_watch() && r.param("fieldSelector") == Some("metadata.name=ada"));
        assert!(watched, "kubectl wait watched with a field selector");
    })
    .await;
}
