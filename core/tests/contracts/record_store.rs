//! The [`RecordStore`] contract, run against `PgStore` and `SqliteStore`.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use quire_core::model::{
    AttemptEnd, Cancelled, Claim, Inserted, Lease, NewReport, NewUser, RefreshToken, Report,
    ReportFilter, StoredOutput, User,
};
use quire_core::store::RecordStore;
use quire_core::{Error, ReportFormat, ReportStatus, ReportType, Result};
use serde_json::json;
use uuid::Uuid;

type Store = Arc<dyn RecordStore>;

crate::contract_suite! {
    backends: {
    postgres: async { (quire_testing::fresh_postgres().await as Store, ()) },
    sqlite: async {
        let (store, dir) = quire_testing::fresh_sqlite().await;
        (store as Store, dir)
    },
    },
    cases: [
        the_store_answers_a_ping,
        registering_a_taken_email_is_a_conflict,
        credentials_are_found_by_email_with_the_password_hash,
        a_refresh_token_can_be_spent_only_once,
        revoking_a_family_revokes_its_unrevoked_tokens_only,
        signing_out_everywhere_revokes_every_token_and_bumps_the_generation,
        the_purge_drops_expired_and_long_revoked_tokens_only,
        a_repeated_idempotency_key_returns_the_existing_report,
        another_users_report_is_invisible_to_user_report,
        concurrent_status_reads_each_get_their_own_answer,
        listing_pages_newest_first_with_a_cursor_and_a_status_filter,
        counts_group_reports_by_type_and_status,
        reports_since_lists_the_users_recent_reports_oldest_first,
        mark_queued_only_moves_pending_reports,
        claiming_a_queued_report_runs_it_and_counts_the_attempt,
        a_second_claim_while_the_lease_is_live_is_leased,
        a_report_whose_lease_expired_can_be_claimed_again,
        only_the_lease_holder_can_renew_record_progress_or_complete,
        a_completed_report_records_its_output_and_is_finished_for_later_claims,
        a_failed_attempt_is_queued_for_retry_or_given_up,
        cancelling_a_running_report_makes_its_completion_fail,
        cancelling_a_finished_report_says_it_already_finished,
        cancelling_another_users_report_looks_like_cancelling_a_missing_one,
        releasing_a_report_queues_it_again_without_counting_a_failure,
        pending_reports_lists_old_pending_reports_oldest_first,
        a_download_url_is_remembered_and_a_report_can_be_deleted,
        only_one_of_many_concurrent_claims_wins,
        stranded_reports_are_expired_leases_and_queued_reports_long_past_their_delivery,
        a_rescue_requeues_or_fails_only_a_report_that_is_still_stranded,
        a_report_for_an_unknown_user_is_refused_as_such,
    ],
}

// ---- helpers -------------------------------------------------------------------------------

/// Now, at the microsecond precision both databases store, so round trips compare equal.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

async fn new_user(store: &Store) -> Result<User> {
    let id = Uuid::now_v7();
    store
        .create_user(NewUser {
            id,
            email: format!("{}@example.com", id.simple()),
            password_hash: "$2b$12$hash".to_owned(),
            created_at: now(),
        })
        .await
}

fn new_report(user_id: Uuid, created_at: DateTime<Utc>) -> NewReport {
    NewReport {
        id: Uuid::now_v7(),
        user_id,
        report_type: ReportType::Activity,
        format: ReportFormat::Csv,
        parameters: json!({"days": 30, "include": ["a", "b"]}),
        idempotency_key: None,
        request_fingerprint: None,
        created_at,
        traceparent: None,
    }
}

async fn insert(store: &Store, report: NewReport) -> Result<Report> {
    match store.insert_report(report).await? {
        Inserted::Created(report) => Ok(report),
        Inserted::Existing(report) => panic!("expected a new report, got existing {}", report.id),
    }
}

/// A stored report of a fresh user.
async fn stored_report(store: &Store) -> Result<Report> {
    let user = new_user(store).await?;
    insert(store, new_report(user.id, now())).await
}

fn lease(owner: &str, expires_at: DateTime<Utc>) -> Lease {
    Lease {
        owner: owner.to_owned(),
        expires_at,
    }
}

fn output(report: &Report) -> StoredOutput {
    StoredOutput {
        key: format!("outputs/{}.csv", report.id),
        location: format!("/data/outputs/{}.csv", report.id),
        size: 1234,
        sha256: "ab".repeat(32),
    }
}

async fn claimed(store: &Store, id: Uuid, owner: &str, at: DateTime<Utc>) -> Result<Report> {
    match store
        .claim_report(id, &lease(owner, at + Duration::minutes(5)), at)
        .await?
    {
        Claim::Claimed { report, .. } => Ok(report),
        other => panic!("expected the claim to succeed, got {other:?}"),
    }
}

async fn reload(store: &Store, id: Uuid) -> Result<Report> {
    Ok(store.report(id).await?.expect("the report exists"))
}

// ---- cases ---------------------------------------------------------------------------------

async fn the_store_answers_a_ping(store: Store) -> Result<()> {
    store.ping().await
}

async fn registering_a_taken_email_is_a_conflict(store: Store) -> Result<()> {
    let user = new_user(&store).await?;
    let again = store
        .create_user(NewUser {
            id: Uuid::now_v7(),
            email: user.email.clone(),
            password_hash: "other".to_owned(),
            created_at: now(),
        })
        .await;
    assert!(
        matches!(&again, Err(Error::Conflict(m)) if m == "email already registered"),
        "{again:?}"
    );
    assert_eq!(store.user(user.id).await?, Some(user));
    Ok(())
}

async fn credentials_are_found_by_email_with_the_password_hash(store: Store) -> Result<()> {
    let user = new_user(&store).await?;
    let credentials = store
        .credentials(&user.email)
        .await?
        .expect("the user is found by email");
    assert_eq!(credentials.user, user);
    assert_eq!(credentials.password_hash, "$2b$12$hash");
    assert!(store.credentials("nobody@example.com").await?.is_none());
    assert!(store.user(Uuid::now_v7()).await?.is_none());
    Ok(())
}

fn refresh_token(user_id: Uuid, family_id: Uuid) -> RefreshToken {
    let t = now();
    RefreshToken {
        id: Uuid::now_v7(),
        user_id,
        family_id,
        token_hash: Uuid::new_v4().as_bytes().to_vec(),
        created_at: t,
        expires_at: t + Duration::days(30),
        family_expires_at: t + Duration::days(90),
        spent_at: None,
        revoked_at: None,
    }
}

async fn a_refresh_token_can_be_spent_only_once(store: Store) -> Result<()> {
    let user = new_user(&store).await?;
    let token = refresh_token(user.id, Uuid::now_v7());
    store.insert_refresh_token(token.clone()).await?;
    assert_eq!(
        store.refresh_token(&token.token_hash).await?,
        Some(token.clone())
    );
    assert!(store.refresh_token(b"unknown").await?.is_none());

    let spent_at = now();
    assert!(store.spend_refresh_token(token.id, spent_at).await?);
    assert!(
        !store.spend_refresh_token(token.id, now()).await?,
        "a second spend must lose"
    );
    let stored = store
        .refresh_token(&token.token_hash)
        .await?
        .expect("the token is kept");
    assert_eq!(stored.spent_at, Some(spent_at));
    Ok(())
}

async fn revoking_a_family_revokes_its_unrevoked_tokens_only(store: Store) -> Result<()> {
    let user = new_user(&store).await?;
    let family = Uuid::now_v7();
    let (first, second) = (
        refresh_token(user.id, family),
        refresh_token(user.id, family),
    );
    let bystander = refresh_token(user.id, Uuid::now_v7());
    for token in [&first, &second, &bystander] {
        store.insert_refresh_token(token.clone()).await?;
    }

    assert_eq!(store.revoke_token_family(family, now()).await?, 2);
    assert_eq!(
        store.revoke_token_family(family, now()).await?,
        0,
        "already revoked"
    );
    assert!(
        !store.spend_refresh_token(second.id, now()).await?,
        "a revoked token can't be spent"
    );
    let revoked = store.refresh_token(&first.token_hash).await?.expect("kept");
    assert!(revoked.revoked_at.is_some());
    let untouched = store
        .refresh_token(&bystander.token_hash)
        .await?
        .expect("kept");
    assert_eq!(untouched.revoked_at, None);
    assert!(store.spend_refresh_token(bystander.id, now()).await?);
    Ok(())
}

async fn signing_out_everywhere_revokes_every_token_and_bumps_the_generation(
    store: Store,
) -> Result<()> {
    let user = new_user(&store).await?;
    let other = new_user(&store).await?;
    assert_eq!(store.token_generation(user.id).await?, Some(0));
    let tokens = [
        refresh_token(user.id, Uuid::now_v7()),
        refresh_token(user.id, Uuid::now_v7()),
    ];
    let bystander = refresh_token(other.id, Uuid::now_v7());
    for token in tokens.iter().chain([&bystander]) {
        store.insert_refresh_token(token.clone()).await?;
    }

    assert_eq!(store.sign_out_everywhere(user.id, now()).await?, Some(1));
    assert_eq!(store.token_generation(user.id).await?, Some(1));
    for token in &tokens {
        let stored = store.refresh_token(&token.token_hash).await?.expect("kept");
        assert!(stored.revoked_at.is_some(), "every family is revoked");
    }
    assert_eq!(store.token_generation(other.id).await?, Some(0));
    let untouched = store
        .refresh_token(&bystander.token_hash)
        .await?
        .expect("kept");
    assert_eq!(untouched.revoked_at, None, "another user's sessions stay");
    assert_eq!(store.sign_out_everywhere(user.id, now()).await?, Some(2));
    assert_eq!(
        store.sign_out_everywhere(Uuid::now_v7(), now()).await?,
        None
    );
    assert_eq!(store.token_generation(Uuid::now_v7()).await?, None);
    Ok(())
}

async fn the_purge_drops_expired_and_long_revoked_tokens_only(store: Store) -> Result<()> {
    let user = new_user(&store).await?;
    let t = now();
    let live = refresh_token(user.id, Uuid::now_v7());
    let expired = RefreshToken {
        expires_at: t - Duration::hours(1),
        ..refresh_token(user.id, Uuid::now_v7())
    };
    let revoked_long_ago = RefreshToken {
        revoked_at: Some(t - Duration::days(2)),
        ..refresh_token(user.id, Uuid::now_v7())
    };
    let revoked_just_now = RefreshToken {
        revoked_at: Some(t),
        ..refresh_token(user.id, Uuid::now_v7())
    };
    let spent = RefreshToken {
        spent_at: Some(t - Duration::days(2)),
        ..refresh_token(user.id, Uuid::now_v7())
    };
    for token in [
        &live,
        &expired,
        &revoked_long_ago,
        &revoked_just_now,
        &spent,
    ] {
        store.insert_refresh_token(token.clone()).await?;
    }

    assert_eq!(
        store.purge_refresh_tokens(t, t - Duration::days(1)).await?,
        2
    );
    assert!(store.refresh_token(&expired.token_hash).await?.is_none());
    assert!(
        store
            .refresh_token(&revoked_long_ago.token_hash)
            .await?
            .is_none()
    );
    for kept in [&live, &revoked_just_now, &spent] {
        assert!(
            store.refresh_token(&kept.token_hash).await?.is_some(),
            "a spent token is kept: presenting it again reveals a theft"
        );
    }
    Ok(())
}

async fn a_repeated_idempotency_key_returns_the_existing_report(store: Store) -> Result<()> {
    let user = new_user(&store).await?;
    let mut request = new_report(user.id, now());
    request.idempotency_key = Some("key-1".to_owned());
    request.request_fingerprint = Some("fp".to_owned());
    let first = insert(&store, request.clone()).await?;
    assert_eq!(first.status, ReportStatus::Pending);
    assert_eq!((first.progress, first.attempts), (0, 0));
    assert_eq!(first.parameters, request.parameters);
    assert_eq!(first.created_at, request.created_at);
    assert_eq!(first.updated_at, request.created_at);
    assert_eq!(first.request_fingerprint.as_deref(), Some("fp"));

    let retry = NewReport {
        id: Uuid::now_v7(),
        ..request.clone()
    };
    assert_eq!(
        store.insert_report(retry.clone()).await?,
        Inserted::Existing(first.clone())
    );
    assert!(
        store.report(retry.id).await?.is_none(),
        "the retry wrote nothing"
    );

    // Keys are scoped to the user.
    let other = new_user(&store).await?;
    let theirs = NewReport {
        id: Uuid::now_v7(),
        user_id: other.id,
        ..request
    };
    assert!(matches!(
        store.insert_report(theirs).await?,
        Inserted::Created(_)
    ));
    Ok(())
}

async fn another_users_report_is_invisible_to_user_report(store: Store) -> Result<()> {
    let report = stored_report(&store).await?;
    let stranger = new_user(&store).await?;
    assert_eq!(store.user_report(stranger.id, report.id).await?, None);
    assert_eq!(
        store.user_report(report.user_id, report.id).await?,
        Some(report.clone())
    );
    assert_eq!(store.report(report.id).await?, Some(report));
    Ok(())
}

/// Many status reads at once (Postgres answers them in shared queries): each gets its own
/// report and its own user's token generation, never another user's report, and reads whose
/// callers gave up do not hold up the rest.
async fn concurrent_status_reads_each_get_their_own_answer(store: Store) -> Result<()> {
    let (alice, bob) = (new_user(&store).await?, new_user(&store).await?);
    // Different generations, so an answer carrying the wrong user's would show.
    store.sign_out_everywhere(bob.id, now()).await?;
    let mut reports = Vec::new();
    for owner in [&alice, &bob, &alice, &bob] {
        reports.push(insert(&store, new_report(owner.id, now())).await?);
    }
    let generation = |user: Uuid| match user {
        u if u == alice.id => Some(0),
        u if u == bob.id => Some(1),
        _ => None,
    };
    let nobody = Uuid::now_v7();
    let mut asks = Vec::new();
    for round in 0..40 {
        for report in &reports {
            let stranger = if report.user_id == alice.id {
                bob.id
            } else {
                alice.id
            };
            asks.push((report.user_id, report.id, Some(report.clone())));
            asks.push((stranger, report.id, None));
            if round % 4 == 0 {
                asks.push((nobody, report.id, None));
                asks.push((report.user_id, Uuid::now_v7(), None));
            }
        }
    }
    // Some callers give up at once; their reads must not take the others' answers with them.
    let abandoned: Vec<_> = asks
        .iter()
        .step_by(7)
        .map(|&(user, id, _)| {
            let store = store.clone();
            tokio::spawn(async move { store.user_report_and_generation(user, id).await })
        })
        .collect();
    for task in &abandoned {
        task.abort();
    }
    let answers = futures::future::join_all(
        asks.iter()
            .map(|&(user, id, _)| store.user_report_and_generation(user, id)),
    )
    .await;
    assert_eq!(answers.len(), asks.len());
    for ((user, id, expected), answer) in asks.into_iter().zip(answers) {
        let (got_generation, got_report) = answer?;
        assert_eq!(
            got_generation,
            generation(user),
            "generation of {user} asking for {id}"
        );
        assert_eq!(got_report, expected, "{user} asking for {id}");
    }
    Ok(())
}

async fn listing_pages_newest_first_with_a_cursor_and_a_status_filter(store: Store) -> Result<()> {
    let user = new_user(&store).await?;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(insert(&store, new_report(user.id, now())).await?.id);
    }
    // Someone else's reports never show up.
    let stranger = new_user(&store).await?;
    insert(&store, new_report(stranger.id, now())).await?;
    for id in [ids[1], ids[3]] {
        assert!(store.mark_queued(id, now()).await?.is_some());
    }
    let page = |status, before, limit| ReportFilter {
        status,
        before,
        limit,
    };
    let list = async |filter: ReportFilter| -> Result<Vec<Uuid>> {
        Ok(store
            .list_reports(user.id, &filter)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect())
    };

    assert_eq!(list(page(None, None, 2)).await?, [ids[4], ids[3]]);
    assert_eq!(list(page(None, Some(ids[3]), 2)).await?, [ids[2], ids[1]]);
    assert_eq!(list(page(None, Some(ids[1]), 2)).await?, [ids[0]]);
    assert_eq!(list(page(None, Some(ids[0]), 2)).await?, Vec::<Uuid>::new());
    assert_eq!(
        list(page(None, None, 100)).await?,
        [ids[4], ids[3], ids[2], ids[1], ids[0]]
    );

    let queued = Some(ReportStatus::Queued);
    assert_eq!(list(page(queued, None, 10)).await?, [ids[3], ids[1]]);
    assert_eq!(list(page(queued, Some(ids[3]), 10)).await?, [ids[1]]);
    assert_eq!(
        list(page(Some(ReportStatus::Pending), Some(ids[3]), 10)).await?,
        [ids[2], ids[0]]
    );
    assert_eq!(
        list(page(Some(ReportStatus::Failed), None, 10)).await?,
        Vec::<Uuid>::new()
    );
    Ok(())
}

async fn counts_group_reports_by_type_and_status(store: Store) -> Result<()> {
    let user = new_user(&store).await?;
    assert_eq!(store.report_counts(user.id).await?.total(), 0);
    let mut profile = new_report(user.id, now());
    profile.report_type = ReportType::Profile;
    profile.format = ReportFormat::Pdf;
    insert(&store, profile).await?;
    let activity = insert(&store, new_report(user.id, now())).await?;
    insert(&store, new_report(user.id, now())).await?;
    assert!(store.mark_queued(activity.id, now()).await?.is_some());
    let stranger = new_user(&store).await?;
    insert(&store, new_report(stranger.id, now())).await?;

    let counts = store.report_counts(user.id).await?;
    let mut groups = counts.by_type_and_status.clone();
    groups.sort_by_key(|(t, s, _)| (t.as_str(), s.as_str()));
    assert_eq!(
        groups,
        [
            (ReportType::Activity, ReportStatus::Pending, 1),
            (ReportType::Activity, ReportStatus::Queued, 1),
            (ReportType::Profile, ReportStatus::Pending, 1),
        ]
    );
    assert_eq!(counts.total(), 3);
    assert_eq!(counts.with_type(ReportType::Activity), 2);
    assert_eq!(counts.with_status(ReportStatus::Pending), 2);
    Ok(())
}

async fn reports_since_lists_the_users_recent_reports_oldest_first(store: Store) -> Result<()> {
    let user = new_user(&store).await?;
    let t0 = now() - Duration::hours(3);
    let mut ids = Vec::new();
    for hours in 0..3 {
        ids.push(
            insert(&store, new_report(user.id, t0 + Duration::hours(hours)))
                .await?
                .id,
        );
    }
    let stranger = new_user(&store).await?;
    insert(&store, new_report(stranger.id, t0 + Duration::hours(2))).await?;

    let since = |at, limit| {
        let store = store.clone();
        async move {
            let reports = store.reports_since(user.id, at, limit).await?;
            Ok::<_, Error>(reports.into_iter().map(|r| r.id).collect::<Vec<_>>())
        }
    };
    assert_eq!(
        since(t0 + Duration::hours(1), 10).await?,
        [ids[1], ids[2]],
        "`since` is inclusive"
    );
    assert_eq!(since(t0, 2).await?, [ids[0], ids[1]]);
    assert_eq!(
        since(t0 + Duration::hours(5), 10).await?,
        Vec::<Uuid>::new()
    );
    Ok(())
}

async fn mark_queued_only_moves_pending_reports(store: Store) -> Result<()> {
    let report = stored_report(&store).await?;
    let at = now();
    assert!(store.mark_queued(report.id, at).await?.is_some());
    let queued = reload(&store, report.id).await?;
    assert_eq!(queued.status, ReportStatus::Queued);
    assert_eq!((queued.queued_at, queued.updated_at), (Some(at), at));
    assert!(
        store.mark_queued(report.id, now()).await?.is_none(),
        "already queued"
    );

    let other = stored_report(&store).await?;
    claimed(&store, other.id, "w1", now()).await?;
    assert!(
        store.mark_queued(other.id, now()).await?.is_none(),
        "a running report stays running"
    );
    assert_eq!(
        reload(&store, other.id).await?.status,
        ReportStatus::Running
    );
    assert!(store.mark_queued(Uuid::now_v7(), now()).await?.is_none());
    Ok(())
}

async fn claiming_a_queued_report_runs_it_and_counts_the_attempt(store: Store) -> Result<()> {
    let report = stored_report(&store).await?;
    assert!(store.mark_queued(report.id, now()).await?.is_some());
    let at = now();
    let expires = at + Duration::minutes(5);
    let Claim::Claimed {
        report: running,
        claimed_before: false,
    } = store
        .claim_report(report.id, &lease("w1", expires), at)
        .await?
    else {
        panic!("a queued report can be claimed, and this is its first claim");
    };
    assert_eq!(running.status, ReportStatus::Running);
    assert_eq!(running.attempts, 1);
    assert_eq!(running.lease_owner.as_deref(), Some("w1"));
    assert_eq!(running.lease_expires_at, Some(expires));
    assert_eq!((running.started_at, running.updated_at), (Some(at), at));
    assert_eq!(reload(&store, report.id).await?, running);

    let missing = store
        .claim_report(Uuid::now_v7(), &lease("w1", expires), at)
        .await?;
    assert_eq!(missing, Claim::Missing);
    Ok(())
}

async fn a_second_claim_while_the_lease_is_live_is_leased(store: Store) -> Result<()> {
    let report = stored_report(&store).await?;
    let at = now();
    let first = claimed(&store, report.id, "w1", at).await?;
    let second = store
        .claim_report(
            report.id,
            &lease("w2", at + Duration::minutes(10)),
            at + Duration::minutes(1),
        )
        .await?;
    assert_eq!(second, Claim::Leased(first.clone()));
    assert_eq!(
        reload(&store, report.id).await?,
        first,
        "the losing claim changed nothing"
    );
    Ok(())
}

async fn a_report_whose_lease_expired_can_be_claimed_again(store: Store) -> Result<()> {
    let report = stored_report(&store).await?;
    let at = now();
    claimed(&store, report.id, "w1", at).await?; // lease until at + 5 min
    let later = at + Duration::minutes(6);
    let Claim::Claimed {
        report: retaken,
        claimed_before: true,
    } = store
        .claim_report(report.id, &lease("w2", later + Duration::minutes(5)), later)
        .await?
    else {
        panic!("an expired lease can be taken over, and says it was claimed before");
    };
    assert_eq!(retaken.attempts, 2);
    assert_eq!(retaken.lease_owner.as_deref(), Some("w2"));
    assert_eq!(retaken.started_at, Some(later));

    // The first worker has lost it.
    assert!(!store.set_progress(report.id, "w1", 50).await?);
    assert!(
        !store
            .complete_report(report.id, "w1", &output(&report), later)
            .await?
    );
    assert_eq!(
        reload(&store, report.id).await?.status,
        ReportStatus::Running
    );
    Ok(())
}

async fn only_the_lease_holder_can_renew_record_progress_or_complete(store: Store) -> Result<()> {
    let report = stored_report(&store).await?;
    let at = now();
    claimed(&store, report.id, "w1", at).await?;
    let renewed = lease("w1", at + Duration::minutes(20));

    assert!(
        !store
            .renew_lease(report.id, &lease("w2", renewed.expires_at))
            .await?
    );
    assert!(!store.set_progress(report.id, "w2", 40).await?);
    assert!(
        !store
            .complete_report(report.id, "w2", &output(&report), now())
            .await?
    );

    assert!(store.renew_lease(report.id, &renewed).await?);
    assert!(store.set_progress(report.id, "w1", 40).await?);
    let current = reload(&store, report.id).await?;
    assert_eq!(current.lease_expires_at, Some(renewed.expires_at));
    assert_eq!(current.progress, 40);
    assert_eq!(current.status, ReportStatus::Running);
    assert!(
        store.set_progress(report.id, "w1", 101).await.is_err(),
        "progress is 0–100"
    );
    Ok(())
}

async fn a_completed_report_records_its_output_and_is_finished_for_later_claims(
    store: Store,
) -> Result<()> {
    let report = stored_report(&store).await?;
    let at = now();
    claimed(&store, report.id, "w1", at).await?;
    let done_at = at + Duration::seconds(30);
    let stored = output(&report);
    assert!(
        store
            .complete_report(report.id, "w1", &stored, done_at)
            .await?
    );

    let completed = reload(&store, report.id).await?;
    assert_eq!(completed.status, ReportStatus::Completed);
    assert_eq!(completed.progress, 100);
    assert_eq!(
        (completed.completed_at, completed.updated_at),
        (Some(done_at), done_at)
    );
    assert_eq!(completed.output_key, Some(stored.key));
    assert_eq!(completed.output_file_path, Some(stored.location));
    assert_eq!(completed.output_size, Some(1234));
    assert_eq!(completed.output_checksum, Some(stored.sha256));
    assert_eq!(
        (completed.lease_owner.clone(), completed.lease_expires_at),
        (None, None)
    );
    assert_eq!(completed.error_message, None);

    assert!(
        !store
            .complete_report(report.id, "w1", &output(&report), now())
            .await?,
        "only once"
    );
    let later = done_at + Duration::hours(1);
    let claim = store
        .claim_report(report.id, &lease("w2", later), later)
        .await?;
    assert_eq!(claim, Claim::Finished(completed));
    Ok(())
}

async fn a_failed_attempt_is_queued_for_retry_or_given_up(store: Store) -> Result<()> {
    let report = stored_report(&store).await?;
    let at = now();
    claimed(&store, report.id, "w1", at).await?;
    assert!(
        !store
            .fail_attempt(report.id, "w2", "not yours", AttemptEnd::RetryAt(at), at)
            .await?
    );
    assert!(
        store
            .fail_attempt(report.id, "w1", "boom", AttemptEnd::RetryAt(at), at)
            .await?
    );
    let retrying = reload(&store, report.id).await?;
    assert_eq!(retrying.status, ReportStatus::Queued);
    assert_eq!(retrying.error_message.as_deref(), Some("boom"));
    assert_eq!(
        (retrying.lease_owner.clone(), retrying.lease_expires_at),
        (None, None)
    );
    assert_eq!(retrying.failed_at, None);

    let second = claimed(&store, report.id, "w2", at + Duration::seconds(10)).await?;
    assert_eq!(second.attempts, 2);
    let failed_at = at + Duration::seconds(20);
    assert!(
        store
            .fail_attempt(report.id, "w2", "boom again", AttemptEnd::GiveUp, failed_at)
            .await?
    );
    let failed = reload(&store, report.id).await?;
    assert_eq!(failed.status, ReportStatus::Failed);
    assert_eq!(failed.error_message.as_deref(), Some("boom again"));
    assert_eq!(failed.failed_at, Some(failed_at));
    assert_eq!(failed.lease_owner, None);
    assert!(
        !store
            .fail_attempt(report.id, "w2", "again", AttemptEnd::GiveUp, failed_at)
            .await?
    );
    let claim = store
        .claim_report(report.id, &lease("w3", failed_at), failed_at)
        .await?;
    assert!(matches!(claim, Claim::Finished(_)), "{claim:?}");
    Ok(())
}

async fn cancelling_a_running_report_makes_its_completion_fail(store: Store) -> Result<()> {
    let report = stored_report(&store).await?;
    let at = now();
    claimed(&store, report.id, "w1", at).await?;
    let cancelled_at = at + Duration::seconds(5);
    let Cancelled::Cancelled(cancelled) = store
        .cancel_report(report.user_id, report.id, cancelled_at)
        .await?
    else {
        panic!("a running report can be cancelled");
    };
    assert_eq!(cancelled.status, ReportStatus::Cancelled);
    assert_eq!(cancelled.cancelled_at, Some(cancelled_at));
    assert_eq!(
        (cancelled.lease_owner.clone(), cancelled.lease_expires_at),
        (None, None)
    );

    assert!(
        !store
            .renew_lease(report.id, &lease("w1", at + Duration::hours(1)))
            .await?
    );
    assert!(
        !store
            .complete_report(report.id, "w1", &output(&report), now())
            .await?
    );
    assert_eq!(reload(&store, report.id).await?, cancelled);
    Ok(())
}

async fn cancelling_a_finished_report_says_it_already_finished(store: Store) -> Result<()> {
    let report = stored_report(&store).await?;
    let at = now();
    let first = store.cancel_report(report.user_id, report.id, at).await?;
    let Cancelled::Cancelled(cancelled) = first else {
        panic!("a pending report can be cancelled")
    };
    let again = store
        .cancel_report(report.user_id, report.id, now())
        .await?;
    assert_eq!(again, Cancelled::AlreadyFinished(cancelled));

    let done = stored_report(&store).await?;
    claimed(&store, done.id, "w1", at).await?;
    assert!(
        store
            .complete_report(done.id, "w1", &output(&done), at)
            .await?
    );
    let outcome = store.cancel_report(done.user_id, done.id, now()).await?;
    assert!(
        matches!(&outcome, Cancelled::AlreadyFinished(r) if r.status == ReportStatus::Completed),
        "{outcome:?}"
    );
    Ok(())
}

async fn cancelling_another_users_report_looks_like_cancelling_a_missing_one(
    store: Store,
) -> Result<()> {
    let report = stored_report(&store).await?;
    let stranger = new_user(&store).await?;
    assert_eq!(
        store.cancel_report(stranger.id, report.id, now()).await?,
        Cancelled::Missing
    );
    assert_eq!(
        reload(&store, report.id).await?,
        report,
        "the report is untouched"
    );
    assert_eq!(
        store
            .cancel_report(stranger.id, Uuid::now_v7(), now())
            .await?,
        Cancelled::Missing
    );
    Ok(())
}

async fn releasing_a_report_queues_it_again_without_counting_a_failure(store: Store) -> Result<()> {
    let report = stored_report(&store).await?;
    let at = now();
    claimed(&store, report.id, "w1", at).await?;
    assert!(!store.release_report(report.id, "w2", at, at).await?);
    let released_at = at + Duration::seconds(3);
    assert!(
        store
            .release_report(report.id, "w1", released_at, released_at)
            .await?
    );
    let released = reload(&store, report.id).await?;
    assert_eq!(released.status, ReportStatus::Queued);
    assert_eq!(
        (released.lease_owner.clone(), released.lease_expires_at),
        (None, None)
    );
    assert_eq!(released.error_message, None);
    assert_eq!(released.updated_at, released_at);
    assert!(
        !store
            .release_report(report.id, "w1", released_at, released_at)
            .await?,
        "no longer held"
    );

    assert_eq!(released.attempts, 0, "the released attempt is given back");
    // The claim is not: the first worker may have stored the output before handing the
    // report back, so the next one must look for it.
    let Claim::Claimed {
        report: again,
        claimed_before: true,
    } = store
        .claim_report(
            report.id,
            &lease("w2", released_at + Duration::minutes(5)),
            released_at,
        )
        .await?
    else {
        panic!("a released report is claimable, and says it was claimed before");
    };
    assert_eq!(again.attempts, 1);
    Ok(())
}

async fn pending_reports_lists_old_pending_reports_oldest_first(store: Store) -> Result<()> {
    let user = new_user(&store).await?;
    let t = now();
    let oldest = insert(&store, new_report(user.id, t - Duration::hours(3))).await?;
    let older = insert(&store, new_report(user.id, t - Duration::hours(2))).await?;
    let queued = insert(&store, new_report(user.id, t - Duration::hours(4))).await?;
    assert!(store.mark_queued(queued.id, t).await?.is_some());
    insert(&store, new_report(user.id, t)).await?; // too recent

    let cutoff = t - Duration::hours(1);
    let ids = |reports: Vec<Report>| reports.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.pending_reports(cutoff, 10).await?),
        [oldest.id, older.id]
    );
    assert_eq!(ids(store.pending_reports(cutoff, 1).await?), [oldest.id]);
    Ok(())
}

async fn a_download_url_is_remembered_and_a_report_can_be_deleted(store: Store) -> Result<()> {
    let report = stored_report(&store).await?;
    let expires = now() + Duration::minutes(15);
    store
        .set_download_url(report.id, "https://example.com/dl", expires)
        .await?;
    let current = reload(&store, report.id).await?;
    assert_eq!(
        current.download_url.as_deref(),
        Some("https://example.com/dl")
    );
    assert_eq!(current.download_url_expires_at, Some(expires));

    assert!(store.delete_report(report.id).await?);
    assert!(store.report(report.id).await?.is_none());
    assert!(!store.delete_report(report.id).await?);
    let missing = store
        .set_download_url(report.id, "https://example.com/dl", expires)
        .await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    Ok(())
}

async fn only_one_of_many_concurrent_claims_wins(store: Store) -> Result<()> {
    let report = stored_report(&store).await?;
    assert!(store.mark_queued(report.id, now()).await?.is_some());
    let at = now();
    let claims = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let owner = format!("w{i}");
            store
                .claim_report(report.id, &lease(&owner, at + Duration::minutes(5)), at)
                .await
        })
    });
    let mut winners = HashSet::new();
    let mut leased = 0;
    for claim in futures::future::join_all(claims).await {
        match claim.expect("the claim task did not panic")? {
            Claim::Claimed { report: r, .. } => {
                winners.insert(r.lease_owner.expect("a claimed report has an owner"));
            }
            Claim::Leased(_) => leased += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((winners.len(), leased), (1, 7));
    let current = reload(&store, report.id).await?;
    assert_eq!(current.attempts, 1);
    assert_eq!(current.lease_owner.as_ref(), winners.iter().next());
    Ok(())
}

async fn stranded_reports_are_expired_leases_and_queued_reports_long_past_their_delivery(
    store: Store,
) -> Result<()> {
    let user = new_user(&store).await?;
    let t = now();
    // Running under a lease that expired at t + 5 min (claimed() leases for 5 minutes).
    let expired = insert(&store, new_report(user.id, t)).await?;
    claimed(&store, expired.id, "w1", t).await?;
    // Queued at t: its message should have been receivable from t on.
    let lost = insert(&store, new_report(user.id, t)).await?;
    store.mark_queued(lost.id, t).await?.expect("pending");
    // Retried with a delay: receivable only from t + 1 h, so not stranded before that.
    let retrying = insert(&store, new_report(user.id, t)).await?;
    claimed(&store, retrying.id, "w2", t).await?;
    let retry_at = t + Duration::hours(1);
    assert!(
        store
            .fail_attempt(retrying.id, "w2", "boom", AttemptEnd::RetryAt(retry_at), t)
            .await?
    );
    // Pending and finished reports are never stranded.
    insert(&store, new_report(user.id, t)).await?;
    let done = insert(&store, new_report(user.id, t)).await?;
    claimed(&store, done.id, "w3", t).await?;
    assert!(
        store
            .complete_report(done.id, "w3", &output(&done), t)
            .await?
    );

    let ids = |reports: Vec<Report>| reports.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.stranded_reports(t, 100).await?),
        Vec::<Uuid>::new(),
        "nothing is stranded before its time"
    );
    assert_eq!(
        ids(store
            .stranded_reports(t + Duration::minutes(1), 100)
            .await?),
        vec![lost.id],
        "the queued report is stranded once its delivery time has passed; the lease is live"
    );
    assert_eq!(
        ids(store
            .stranded_reports(t + Duration::minutes(10), 100)
            .await?),
        vec![expired.id, lost.id],
        "then the expired lease too, oldest first"
    );
    assert_eq!(
        ids(store.stranded_reports(t + Duration::hours(2), 100).await?),
        vec![expired.id, lost.id, retrying.id],
        "a retry only once its delay is long past"
    );
    assert_eq!(
        ids(store.stranded_reports(t + Duration::hours(2), 1).await?),
        vec![expired.id],
        "at most `limit`"
    );
    Ok(())
}

async fn a_rescue_requeues_or_fails_only_a_report_that_is_still_stranded(
    store: Store,
) -> Result<()> {
    let user = new_user(&store).await?;
    let t = now();
    let later = t + Duration::minutes(10);
    let report = insert(&store, new_report(user.id, t)).await?;
    let running = claimed(&store, report.id, "w1", t).await?;
    assert_eq!(running.attempts, 1);

    assert_eq!(
        store.rescue_report(report.id, t, None, t).await?,
        None,
        "a live lease is not stranded"
    );
    let requeued = store
        .rescue_report(report.id, later, None, later)
        .await?
        .expect("an expired lease is rescued");
    assert_eq!(requeued.status, ReportStatus::Queued);
    assert_eq!(
        (requeued.lease_owner.clone(), requeued.lease_expires_at),
        (None, None)
    );
    assert_eq!(requeued.available_at, Some(later));
    assert_eq!(
        requeued.attempts, 1,
        "the dead worker's attempt still counts"
    );
    assert!(
        !store.renew_lease(report.id, &lease("w1", later)).await?,
        "the dead worker's lease is gone"
    );
    assert_eq!(
        store.rescue_report(report.id, later, None, later).await?,
        None,
        "requeued just now: not stranded again until its new delivery time is long past"
    );

    let much_later = later + Duration::minutes(10);
    let failed = store
        .rescue_report(report.id, much_later, Some("gave up"), much_later)
        .await?
        .expect("still queued past its delivery: stranded");
    assert_eq!(failed.status, ReportStatus::Failed);
    assert_eq!(failed.error_message.as_deref(), Some("gave up"));
    assert_eq!(failed.failed_at, Some(much_later));
    assert_eq!(
        store
            .rescue_report(report.id, much_later + Duration::hours(1), None, much_later)
            .await?,
        None,
        "a finished report is never rescued"
    );
    Ok(())
}

async fn a_report_for_an_unknown_user_is_refused_as_such(store: Store) -> Result<()> {
    let nobody = Uuid::now_v7();
    match store.insert_report(new_report(nobody, now())).await {
        Err(Error::UnknownUser(id)) => assert_eq!(id, nobody),
        other => panic!("expected UnknownUser, got {other:?}"),
    }
    Ok(())
}
