//! The routing rules, tested without sockets or wasmtime: fake links stand
//! in for peers and a fake [`Local`] for the plugins. Time is paused, so
//! hedge delays and backoffs are exact.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::protocol::retry::RetryPolicy;
use crate::region::peers::{Health, Latency, Link, PeerConfig};

/// What a fake peer does with a call.
#[derive(Clone)]
enum Answer {
    /// Answers with this after the delay.
    After(Duration, Result<Value, CallError>),
    /// Never answers (a hung host).
    Never,
}

fn now(value: &str) -> Answer {
    Answer::After(Duration::ZERO, Ok(Value::Text(value.into())))
}

fn after(ms: u64, value: &str) -> Answer {
    Answer::After(Duration::from_millis(ms), Ok(Value::Text(value.into())))
}

fn fails(code: ErrorCode, processed: Processed) -> Answer {
    Answer::After(
        Duration::ZERO,
        Err(CallError::new(
            code,
            processed,
            format!("{code} from a fake"),
        )),
    )
}

/// A scripted peer connection: answers from `script` in order, then
/// `otherwise`; records when each call started and how many were dropped
/// unanswered (cancelled on the peer).
struct FakeLink {
    script: Mutex<VecDeque<Answer>>,
    otherwise: Answer,
    started: Mutex<Vec<Instant>>,
    contexts: Mutex<Vec<CallContext>>,
    dropped: Arc<AtomicUsize>,
}

impl FakeLink {
    fn new(script: Vec<Answer>, otherwise: Answer) -> Arc<FakeLink> {
        Arc::new(FakeLink {
            script: Mutex::new(script.into()),
            otherwise,
            started: Mutex::new(Vec::new()),
            contexts: Mutex::new(Vec::new()),
            dropped: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn always(answer: Answer) -> Arc<FakeLink> {
        FakeLink::new(Vec::new(), answer)
    }

    fn calls(&self) -> usize {
        self.started.lock().unwrap().len()
    }

    fn started(&self) -> Vec<Instant> {
        self.started.lock().unwrap().clone()
    }

    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Counts a call future dropped before it answered.
struct Unanswered {
    dropped: Arc<AtomicUsize>,
    answered: bool,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if !self.answered {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Link for FakeLink {
    fn call<'a>(
        &'a self,
        _function: &'a str,
        _args: Vec<Value>,
        context: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value, CallError>> {
        self.started.lock().unwrap().push(Instant::now());
        self.contexts.lock().unwrap().push(context.clone());
        let answer = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.otherwise.clone());
        let guard = Unanswered {
            dropped: self.dropped.clone(),
            answered: false,
        };
        Box::pin(async move {
            let mut guard = guard;
            let result = match answer {
                Answer::After(delay, result) => {
                    tokio::time::sleep(delay).await;
                    result
                }
                Answer::Never => std::future::pending().await,
            };
            guard.answered = true;
            result
        })
    }
}

/// Serves `functions` here, answering each with `"local"`.
struct FakeLocal {
    functions: Vec<&'static str>,
    changes: watch::Sender<u64>,
}

impl Local for FakeLocal {
    fn run(
        &self,
        request: CallRequest,
        _nested: Arc<dyn Service>,
        _region: Arc<str>,
        _meter: &mut CallMeter,
    ) -> Placement<impl Future<Output = Result<Value, CallError>> + Send> {
        if self.functions.contains(&request.function.as_str()) {
            Placement::Here(async { Ok(Value::Text("local".into())) })
        } else {
            Placement::Elsewhere(request)
        }
    }

    fn catalog(&self, region: &str) -> Vec<FunctionInfo> {
        self.functions
            .iter()
            .map(|name| info(name, region, false))
            .collect()
    }

    fn serves(&self, function: &str) -> bool {
        self.functions.contains(&function)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

fn info(name: &str, region: &str, idempotent: bool) -> FunctionInfo {
    FunctionInfo {
        name: name.into(),
        signature: "func()".into(),
        regions: vec![region.into()],
        idempotent,
    }
}

/// A peer of `region` at `addr` serving `f`, answering through `link`.
fn peer(region: &str, addr: &str, link: &Arc<FakeLink>, idempotent: bool) -> Arc<Peer> {
    peer_with(region, addr, link, idempotent, PeerConfig::default())
}

fn peer_with(
    region: &str,
    addr: &str,
    link: &Arc<FakeLink>,
    idempotent: bool,
    config: PeerConfig,
) -> Arc<Peer> {
    let link: Arc<dyn Link> = link.clone();
    Peer::linked(
        region,
        addr,
        config,
        link,
        vec![info("f", region, idempotent)],
    )
}

/// A router of region `here` serving `local` itself, with `peers`, trying
/// equally ranked peers best-scored first (no random pick).
fn router(
    local: &[&'static str],
    peers: Vec<Arc<Peer>>,
    routes: Routes,
    config: RoutingConfig,
) -> Arc<Router<FakeLocal>> {
    let config = RoutingConfig {
        two_choices: false,
        ..config
    };
    Arc::new(Router::new(
        "here",
        FakeLocal {
            functions: local.to_vec(),
            changes: watch::Sender::new(0),
        },
        Peers::fixed(peers),
        routes,
        config,
    ))
}

/// A router forwarding `f` to hosts `a0`, `a1`, ... of region `a`, the
/// n-th answering with `answers[n]`; unmeasured and idle, they are tried in
/// that order. Returns their links and the router.
fn hosts(
    answers: Vec<Answer>,
    idempotent: bool,
    config: RoutingConfig,
) -> (Vec<Arc<FakeLink>>, Arc<Router<FakeLocal>>) {
    let links: Vec<_> = answers.into_iter().map(FakeLink::always).collect();
    let peers = links
        .iter()
        .enumerate()
        .map(|(i, link)| peer("a", &format!("a{i}"), link, idempotent))
        .collect();
    (links, router(&[], peers, vec![], config))
}

fn calls(links: &[Arc<FakeLink>]) -> Vec<usize> {
    links.iter().map(|l| l.calls()).collect()
}

fn no_hedging() -> RoutingConfig {
    RoutingConfig {
        hedge_max: Duration::ZERO,
        ..RoutingConfig::default()
    }
}

/// Hedges after exactly `ms`.
fn hedge_after(ms: u64) -> RoutingConfig {
    RoutingConfig {
        hedge_min: Duration::from_millis(ms),
        hedge_max: Duration::from_millis(ms),
        ..RoutingConfig::default()
    }
}

/// Calls `function` through `router`; a call that never ends fails the test
/// (a minute of paused time passes at once).
async fn call(router: &Arc<Router<FakeLocal>>, function: &str) -> Result<Value, CallError> {
    let request = CallRequest::new(function, vec![], Duration::from_secs(5));
    tokio::time::timeout(Duration::from_secs(60), router.clone().call(request))
        .await
        .expect("the call never ended")
}

fn text(value: &str) -> Result<Value, CallError> {
    Ok(Value::Text(value.into()))
}

fn ms(from: Instant, to: Instant) -> u128 {
    (to - from).as_millis()
}

#[tokio::test(start_paused = true)]
async fn a_function_served_here_runs_here_and_is_never_forwarded() {
    let link = FakeLink::always(now("remote"));
    let router = router(
        &["f"],
        vec![peer("here", "h2", &link, true)],
        vec![],
        RoutingConfig::default(),
    );
    assert_eq!(call(&router, "f").await, text("local"));
    assert_eq!(link.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_forwarded_call_carries_one_more_hop_this_region_and_the_remaining_deadline() {
    let link = FakeLink::always(now("remote"));
    let router = router(
        &[],
        vec![peer("far", "f1", &link, false)],
        vec![],
        no_hedging(),
    );
    let mut request = CallRequest::new("f", vec![], Duration::from_secs(5));
    request.context.hops = 2;
    request.context.visited = vec!["origin".into()];
    let deadline = request.context.deadline;
    assert_eq!(router.clone().call(request).await, text("remote"));
    let context = link.contexts.lock().unwrap()[0].clone();
    assert_eq!(context.hops, 3);
    assert_eq!(context.visited, ["origin", "here"]);
    // The deadline is the caller's, not a new one.
    assert_eq!(context.deadline, deadline);
    assert_eq!(context.deadline_ms(), 5000);
}

#[tokio::test(start_paused = true)]
async fn nobody_serving_a_function_is_not_found_by_name() {
    let link = FakeLink::always(now("remote"));
    let router = router(
        &[],
        vec![peer("far", "f1", &link, false)],
        vec![],
        no_hedging(),
    );
    let error = call(&router, "g").await.unwrap_err();
    assert_eq!(error.code, ErrorCode::NotFound);
    assert_eq!(error.processed, Processed::No);
    assert_eq!(error.region.as_deref(), Some("here"));
    assert_eq!(error.message, "no host serves function `g`");
}

/// The order the router would try the peers in, by address.
fn order(router: &Router<FakeLocal>, function: &str) -> Vec<String> {
    let request = CallRequest::new(function, vec![], Duration::from_secs(5));
    let (candidates, _) = router.plan(&request, None).unwrap();
    candidates.iter().map(|p| p.addr.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn candidates_are_healthy_first_then_own_region_then_route_order_then_score() {
    let link = FakeLink::always(now("x"));
    let (a1, a2) = (peer("a", "a1", &link, true), peer("a", "a2", &link, true));
    let (b1, mine) = (
        peer("b", "b1", &link, true),
        peer("here", "mine", &link, true),
    );
    let peers = vec![a1.clone(), b1.clone(), a2.clone(), mine.clone()];
    // Unmeasured peers score alike; the calls in flight break the tie.
    let router = router(&[], peers, vec![], no_hedging());
    assert_eq!(order(&router, "f"), ["mine", "a1", "b1", "a2"]);

    let routes = vec![("f".to_owned(), vec!["b".to_owned(), "a".to_owned()])];
    router.set_routes(routes);
    assert_eq!(order(&router, "f"), ["mine", "b1", "a1", "a2"]);

    // Load: a call in flight on `a1` puts `a2` ahead of it.
    let hung = FakeLink::always(Answer::Never);
    let busy = peer("a", "busy", &hung, true);
    let router2 = self::router(&[], vec![busy.clone(), a2.clone()], vec![], no_hedging());
    let context = CallContext::new(Duration::from_secs(5));
    let in_flight = busy.call("f", vec![], &context);
    tokio::pin!(in_flight);
    assert!(futures::poll!(&mut in_flight).is_pending());
    assert_eq!(busy.in_flight(), 1);
    assert_eq!(order(&router2, "f"), ["a2", "busy"]);

    // Down (no link) goes last, below ejected.
    mine.link_down("test".into());
    assert_eq!(mine.health(), Health::Down);
    assert_eq!(order(&router, "f"), ["b1", "a1", "a2", "mine"]);
}

#[test]
fn routes_match_the_most_specific_pattern_whatever_the_file_order() {
    let table = |entries: &[(&str, &str)]| -> Routes {
        entries
            .iter()
            .map(|(p, r)| (p.to_string(), vec![r.to_string()]))
            .collect()
    };
    let entries = [
        ("*", "any"),
        ("math.*", "math-prefix"),
        ("math.add", "exact"),
        ("ma*", "short-prefix"),
    ];
    let mut reversed = entries;
    reversed.reverse();
    for routes in [table(&entries), table(&reversed)] {
        let pick = |f: &str| route_for(&routes, f).map(|r| r[0].clone());
        assert_eq!(pick("math.add").as_deref(), Some("exact"));
        assert_eq!(pick("math.addition").as_deref(), Some("math-prefix"));
        assert_eq!(pick("mat.x").as_deref(), Some("short-prefix"));
        assert_eq!(pick("orders.place").as_deref(), Some("any"));
    }
    let routes = table(&[("math.*", "m")]);
    assert_eq!(route_for(&routes, "orders.place"), None);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_did_not_run_fails_over_at_once() {
    let answers = vec![fails(ErrorCode::Unavailable, Processed::No), now("a1")];
    let (links, router) = hosts(answers, false, no_hedging());
    let start = Instant::now();
    assert_eq!(call(&router, "f").await, text("a1"));
    assert_eq!(ms(start, links[1].started()[0]), 0);
    assert_eq!(calls(&links), [1, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_may_have_run_is_retried_only_when_idempotent() {
    for idempotent in [false, true] {
        let answers = vec![fails(ErrorCode::Unavailable, Processed::Maybe), now("a1")];
        let (links, router) = hosts(answers, idempotent, no_hedging());
        let start = Instant::now();
        let result = call(&router, "f").await;
        if idempotent {
            assert_eq!(result, text("a1"));
            // After a jittered backoff of 25 ms ± 20%.
            let waited = ms(start, links[1].started()[0]);
            assert!((20..=30).contains(&waited), "waited {waited} ms");
        } else {
            let error = result.unwrap_err();
            assert_eq!(error.code, ErrorCode::Unavailable);
            assert_eq!(error.processed, Processed::Maybe);
            assert_eq!(error.message, "unavailable from a fake");
            assert_eq!(calls(&links), [1, 0]);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_function_is_retried_only_if_every_host_says_so() {
    let first = FakeLink::always(fails(ErrorCode::Unavailable, Processed::Maybe));
    let second = FakeLink::always(now("second"));
    let router = router(
        &[],
        vec![
            peer("a", "a1", &first, true),
            peer("a", "a2", &second, false),
        ],
        vec![],
        no_hedging(),
    );
    let error = call(&router, "f").await.unwrap_err();
    assert_eq!(error.processed, Processed::Maybe);
    assert_eq!(second.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn answers_that_a_retry_cannot_change_are_final() {
    for (code, processed) in [
        (ErrorCode::HandlerError, Processed::Yes),
        (ErrorCode::InvalidArgs, Processed::No),
        (ErrorCode::Trap, Processed::Maybe),
        (ErrorCode::DeadlineExceeded, Processed::Maybe),
    ] {
        let (links, router) = hosts(vec![fails(code, processed), now("a1")], true, no_hedging());
        let error = call(&router, "f").await.unwrap_err();
        assert_eq!((error.code, error.processed), (code, processed));
        assert_eq!(calls(&links), [1, 0], "{code} was retried");
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_between_retries_of_calls_that_may_have_run() {
    let answers = vec![fails(ErrorCode::Unavailable, Processed::Maybe); 4];
    let (links, router) = hosts(answers, true, no_hedging());
    let error = call(&router, "f").await.unwrap_err();
    assert_eq!(error.code, ErrorCode::Unavailable);
    assert_eq!(error.processed, Processed::Maybe);
    assert_eq!(
        error.message,
        "no host serving `f` answered; tried region `a` (a0), `a` (a1), `a` (a2), `a` (a3): \
         unavailable from a fake"
    );
    let starts: Vec<Instant> = links.iter().map(|l| l.started()[0]).collect();
    for (i, bounds) in [(20, 30), (40, 60), (80, 120)].into_iter().enumerate() {
        let waited = ms(starts[i], starts[i + 1]);
        assert!(
            (bounds.0..=bounds.1).contains(&waited),
            "retry {i} waited {waited} ms"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_are_capped() {
    let config = RoutingConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        },
        ..no_hedging()
    };
    let answers = vec![fails(ErrorCode::Unavailable, Processed::No); 6];
    let (links, router) = hosts(answers, false, config);
    let error = call(&router, "f").await.unwrap_err();
    assert_eq!(error.processed, Processed::No);
    assert_eq!(calls(&links), [1, 1, 1, 0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_bounds_retries_across_calls() {
    let config = RoutingConfig {
        budget_min: 2,
        budget_ratio: 0.0,
        ..no_hedging()
    };
    let answers = vec![fails(ErrorCode::Unavailable, Processed::No); 4];
    let (links, router) = hosts(answers, false, config);
    call(&router, "f").await.unwrap_err();
    assert_eq!(
        calls(&links),
        [1, 1, 1, 0],
        "the call and the two retries allowed"
    );
    call(&router, "f").await.unwrap_err();
    assert_eq!(
        calls(&links),
        [2, 1, 1, 0],
        "no retry left for the second call"
    );
    // A new window allows retries again. The hosts that failed without a
    // word are late by now, so the one not yet asked goes first.
    tokio::time::advance(Duration::from_secs(10)).await;
    call(&router, "f").await.unwrap_err();
    assert_eq!(calls(&links), [3, 2, 1, 1]);
}

#[tokio::test(start_paused = true)]
async fn stale_catalogs_fail_over_and_end_in_not_found() {
    let answers = vec![fails(ErrorCode::NotFound, Processed::No); 2];
    let (links, router) = hosts(answers, false, no_hedging());
    let error = call(&router, "f").await.unwrap_err();
    assert_eq!(error.code, ErrorCode::NotFound);
    assert_eq!(error.message, "no host serves function `f`");
    assert_eq!(calls(&links), [1, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_late_idempotent_call_is_hedged_and_the_first_answer_wins() {
    let (links, router) = hosts(vec![Answer::Never, after(5, "a1")], true, hedge_after(50));
    let start = Instant::now();
    assert_eq!(call(&router, "f").await, text("a1"));
    assert_eq!(ms(start, links[1].started()[0]), 50);
    assert_eq!(ms(start, Instant::now()), 55);
    // The late attempt was dropped: cancelled on its host.
    assert_eq!((links[0].dropped(), links[1].dropped()), (1, 0));
    assert_eq!(router.peers.list()[0].in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_still_wins_if_it_answers_first_after_a_hedge() {
    let answers = vec![after(80, "a0"), after(100, "a1")];
    let (links, router) = hosts(answers, true, hedge_after(50));
    assert_eq!(call(&router, "f").await, text("a0"));
    assert_eq!(calls(&links), [1, 1]);
    assert_eq!((links[0].dropped(), links[1].dropped()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_calls_are_never_hedged() {
    let answers = vec![after(2000, "a0"), now("a1")];
    let (links, router) = hosts(answers, false, hedge_after(50));
    assert_eq!(call(&router, "f").await, text("a0"));
    assert_eq!(calls(&links), [1, 0]);
}

#[tokio::test(start_paused = true)]
async fn hedges_are_counted_against_the_retry_budget() {
    let config = RoutingConfig {
        budget_min: 1,
        budget_ratio: 0.0,
        ..hedge_after(50)
    };
    let (links, router) = hosts(vec![after(200, "a0"), now("a1")], true, config);
    assert_eq!(call(&router, "f").await, text("a1"));
    // The budget is spent: the next late call waits for its first attempt.
    assert_eq!(call(&router, "f").await, text("a0"));
    assert_eq!(calls(&links), [2, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_new_budget_window_allows_what_the_last_one_earned() {
    let config = RoutingConfig {
        budget_min: 0,
        budget_ratio: 0.5,
        ..no_hedging()
    };
    // a0 answers 4 calls, then its catalog is stale: each call needs a
    // retry on a1.
    let stale = fails(ErrorCode::NotFound, Processed::No);
    let a0 = FakeLink::new(vec![now("a0"); 4], stale);
    let a1 = FakeLink::always(now("a1"));
    let router = router(
        &[],
        vec![peer("a", "a0", &a0, false), peer("a", "a1", &a1, false)],
        vec![],
        config,
    );
    for _ in 0..4 {
        assert_eq!(call(&router, "f").await, text("a0"));
    }
    // The 4 calls of the last window earn 2 retries in the next one, before
    // it has seen calls of its own.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(call(&router, "f").await, text("a1"));
    assert_eq!(call(&router, "f").await, text("a1"));
    assert_eq!(
        call(&router, "f").await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!((a0.calls(), a1.calls()), (7, 2));
    // After a window with no calls at all, the old ones no longer count.
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(
        call(&router, "f").await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!((a0.calls(), a1.calls()), (8, 2));
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_went_silent_gets_new_calls_last_until_it_speaks() {
    let (links, router) = hosts(vec![Answer::Never, after(5, "a1")], true, hedge_after(50));
    assert_eq!(order(&router, "f"), ["a0", "a1"]);
    assert_eq!(call(&router, "f").await, text("a1"));
    // a0 took the first call and has said nothing for 55 ms, more than its
    // 50 ms hedge delay: the next calls go to a1 without a hedge.
    assert_eq!(order(&router, "f"), ["a1", "a0"]);
    let start = Instant::now();
    assert_eq!(call(&router, "f").await, text("a1"));
    assert_eq!(ms(start, Instant::now()), 5);
    assert_eq!(calls(&links), [1, 2]);
    // A pong from a0 shows it is alive again.
    router.peers.list()[0].heard_from();
    assert_eq!(order(&router, "f"), ["a0", "a1"]);
}

#[test]
fn the_hedge_delay_follows_the_latency_a_peer_answers_with() {
    let (min, max) = (Duration::from_millis(10), Duration::from_secs(1));
    let mut latency = Latency::default();
    assert_eq!(latency.late_after(min, max), max, "nothing measured yet");
    latency.observe(Duration::from_millis(20));
    // mean 20 ms, deviation 10 ms.
    assert_eq!(latency.late_after(min, max), Duration::from_millis(60));
    latency.observe(Duration::from_millis(100));
    // deviation 0.75 × 10 + 0.25 × 80 = 27.5; mean 0.875 × 20 + 0.125 × 100 = 30.
    assert_eq!(latency.late_after(min, max), Duration::from_millis(140));
    assert_eq!(
        latency.late_after(min, Duration::from_millis(100)),
        Duration::from_millis(100)
    );
    let mut fast = Latency::default();
    fast.observe(Duration::from_micros(100));
    assert_eq!(fast.late_after(min, max), min);
}

#[tokio::test(start_paused = true)]
async fn a_dead_peer_fails_its_calls_in_flight_at_once() {
    for idempotent in [false, true] {
        let hung = FakeLink::always(Answer::Never);
        let other = FakeLink::always(now("other"));
        let dead = peer("a", "a1", &hung, idempotent);
        let router = router(
            &[],
            vec![dead.clone(), peer("a", "a2", &other, idempotent)],
            vec![],
            no_hedging(),
        );
        let start = Instant::now();
        let killer = {
            let dead = dead.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                dead.link_down("nothing received for 1.5s; declared dead".into());
            })
        };
        let result = call(&router, "f").await;
        killer.await.unwrap();
        if idempotent {
            assert_eq!(result, text("other"));
            let failed_over = ms(start, other.started()[0]);
            assert!((1520..=1530).contains(&failed_over), "{failed_over} ms");
        } else {
            let error = result.unwrap_err();
            assert_eq!(ms(start, Instant::now()), 1500);
            assert_eq!(error.code, ErrorCode::Unavailable);
            assert_eq!(error.processed, Processed::Maybe);
            assert_eq!(error.region.as_deref(), Some("here"));
            assert_eq!(
                error.message,
                "lost `a1` (region `a`) during the call: nothing received for 1.5s; declared dead"
            );
            assert_eq!(other.calls(), 0);
        }
        assert_eq!(dead.in_flight(), 0);
        assert_eq!(dead.health(), Health::Down);
    }
}

#[tokio::test(start_paused = true)]
async fn a_forwarded_call_dropped_by_its_caller_leaves_nothing_in_flight() {
    let hung = FakeLink::always(Answer::Never);
    let target = peer("a", "a1", &hung, false);
    let router = router(&[], vec![target.clone()], vec![], no_hedging());
    let request = CallRequest::new("f", vec![], Duration::from_secs(5));
    let mut forwarded = router.clone().call(request);
    assert!(futures::poll!(&mut forwarded).is_pending());
    assert_eq!(target.in_flight(), 1);
    drop(forwarded);
    assert_eq!(target.in_flight(), 0);
    assert_eq!(hung.dropped(), 1, "the call is cancelled on the peer");
}

#[tokio::test(start_paused = true)]
async fn host_level_failures_eject_a_peer_and_again_when_it_keeps_failing() {
    let config = PeerConfig {
        eject_after: 3,
        eject_base: Duration::from_secs(30),
        ..PeerConfig::default()
    };
    let from_peer = |code, processed, region: &str| {
        Answer::After(
            Duration::ZERO,
            Err(CallError::new(code, processed, "x").in_region(region)),
        )
    };
    let run = |peer: Arc<Peer>, n: usize| async move {
        for _ in 0..n {
            let context = CallContext::new(Duration::from_secs(5));
            let _ = peer.call("f", vec![], &context).await;
        }
    };

    // Handler-level errors and errors of other regions' hosts never eject.
    for answer in [
        from_peer(ErrorCode::HandlerError, Processed::Yes, "a"),
        from_peer(ErrorCode::Trap, Processed::Maybe, "a"),
        from_peer(ErrorCode::ResourceExhausted, Processed::Maybe, "a"),
        from_peer(ErrorCode::DeadlineExceeded, Processed::Maybe, "a"),
        from_peer(ErrorCode::Unavailable, Processed::No, "elsewhere"),
    ] {
        let link = FakeLink::always(answer);
        let p = peer_with("a", "a1", &link, false, config.clone());
        run(p.clone(), 10).await;
        assert_eq!(p.health(), Health::Up);
    }

    // Host-level failures do, from the peer or from our side of the link.
    for answer in [
        from_peer(ErrorCode::Internal, Processed::Maybe, "a"),
        from_peer(ErrorCode::Unavailable, Processed::No, "a"),
        from_peer(ErrorCode::ResourceExhausted, Processed::No, "a"),
        fails(ErrorCode::Unavailable, Processed::Maybe),
        fails(ErrorCode::DeadlineExceeded, Processed::Maybe),
    ] {
        let link = FakeLink::always(answer);
        let p = peer_with("a", "a1", &link, false, config.clone());
        run(p.clone(), 2).await;
        assert_eq!(p.health(), Health::Up, "two failures are not enough");
        run(p.clone(), 1).await;
        assert_eq!(p.health(), Health::Ejected);
    }

    // A peer that keeps failing is ejected again, for longer.
    let link = FakeLink::new(
        vec![],
        from_peer(ErrorCode::Internal, Processed::Maybe, "a"),
    );
    let p = peer_with("a", "a1", &link, false, config.clone());
    run(p.clone(), 3).await;
    let first = p.ejected_until().unwrap();
    assert_eq!(first - Instant::now(), Duration::from_secs(30));
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(p.health(), Health::Up, "the ejection ended");
    run(p.clone(), 3).await;
    let second = p.ejected_until().expect("ejected again");
    assert_eq!(second - Instant::now(), Duration::from_secs(60));

    // An answer after the ejection ended resets the count.
    tokio::time::advance(Duration::from_secs(60)).await;
    link.script.lock().unwrap().push_back(now("fine"));
    run(p.clone(), 4).await;
    let third = p.ejected_until().expect("ejected once more");
    assert_eq!(third - Instant::now(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn ejected_hosts_are_tried_after_healthy_ones() {
    let failing = FakeLink::always(fails(ErrorCode::Unavailable, Processed::No));
    let fine = FakeLink::always(now("fine"));
    let bad = peer("a", "bad", &failing, false);
    let good = peer("a", "good", &fine, false);
    let router = router(&[], vec![bad.clone(), good.clone()], vec![], no_hedging());
    for _ in 0..5 {
        let context = CallContext::new(Duration::from_secs(5));
        bad.call("f", vec![], &context).await.unwrap_err();
    }
    assert_eq!(bad.health(), Health::Ejected);
    assert_eq!(order(&router, "f"), ["good", "bad"]);
}

#[tokio::test(start_paused = true)]
async fn list_shows_only_regions_whose_hosts_are_linked() {
    let link = FakeLink::always(now("x"));
    let a = peer("a", "a1", &link, false);
    let b = peer("b", "b1", &link, false);
    let router = router(&["g"], vec![a.clone(), b.clone()], vec![], no_hedging());
    let regions = |router: &Router<FakeLocal>| -> Vec<(String, Vec<String>)> {
        router
            .catalog()
            .into_iter()
            .map(|f| (f.name, f.regions))
            .collect()
    };
    assert_eq!(
        regions(&router),
        [
            ("f".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
            ("g".to_owned(), vec!["here".to_owned()])
        ]
    );
    b.link_down("gone".into());
    assert_eq!(
        regions(&router),
        [
            ("f".to_owned(), vec!["a".to_owned()]),
            ("g".to_owned(), vec!["here".to_owned()])
        ]
    );
    a.link_down("gone".into());
    assert_eq!(
        regions(&router),
        [("g".to_owned(), vec!["here".to_owned()])]
    );
    // Calls still reach the known hosts' region and fail as unavailable.
    let error = call(&router, "f").await.unwrap_err();
    assert_eq!(error.code, ErrorCode::Unavailable);
    assert_eq!(error.processed, Processed::No);
}

#[tokio::test(start_paused = true)]
async fn list_marks_a_function_idempotent_only_when_every_host_serving_it_does() {
    let link = FakeLink::always(now("x"));
    let idempotent = |peers: Vec<Arc<Peer>>| {
        let router = router(&[], peers, vec![], no_hedging());
        let catalog = router.catalog();
        assert_eq!(catalog.len(), 1);
        // The router retries by the same rule.
        let request = CallRequest::new("f", vec![], Duration::from_secs(5));
        let (_, retries_it) = router.plan(&request, None).unwrap();
        assert_eq!(catalog[0].idempotent, retries_it);
        catalog[0].idempotent
    };
    let both = vec![peer("a", "a1", &link, true), peer("b", "b1", &link, true)];
    assert!(idempotent(both));
    for order in [[true, false], [false, true]] {
        let mixed = vec![
            peer("a", "a1", &link, order[0]),
            peer("b", "b1", &link, order[1]),
        ];
        assert!(!idempotent(mixed), "{order:?}");
    }
}

// ---- Calls routed by a key ----

/// Routes `f` by its first argument.
fn by_first_argument() -> Keys {
    let raw = crate::region::keys::RawKeyRule::Key("args[0]".into());
    Keys::new(vec![
        crate::region::keys::KeyRule::parse("f", &raw).unwrap(),
    ])
}

/// A router of region `here` at address `h0`, serving `local`, routing `f`
/// by `keys`.
fn keyed_router(
    local: &[&'static str],
    peers: Vec<Arc<Peer>>,
    keys: Keys,
) -> Arc<Router<FakeLocal>> {
    let router = Router::new(
        "here",
        FakeLocal {
            functions: local.to_vec(),
            changes: watch::Sender::new(0),
        },
        Peers::fixed(peers),
        vec![],
        no_hedging(),
    )
    .with_keys("h0", keys);
    Arc::new(router)
}

/// The hosts (`(address, region)`) in the order of `key`, heaviest first.
fn key_order(hosts: &[(&str, &str)], key: &str, pinned: Option<Vec<String>>) -> Vec<String> {
    let keyed = Keyed {
        key: key.as_bytes().to_vec(),
        pinned,
    };
    let mut hosts = hosts.to_vec();
    hosts.sort_by_key(|(addr, region)| keyed.rank(addr, region));
    hosts.into_iter().map(|(addr, _)| addr.to_owned()).collect()
}

/// The first key `k0`, `k1`, ... whose order over `hosts` is `wanted`.
fn key_with_order(hosts: &[(&str, &str)], wanted: &[&str]) -> String {
    (0..)
        .map(|n| format!("k{n}"))
        .find(|key| key_order(hosts, key, None) == wanted)
        .unwrap()
}

async fn call_key(
    router: &Arc<Router<FakeLocal>>,
    key: &str,
    from_peer: bool,
) -> Result<Value, CallError> {
    let mut request = CallRequest::new("f", vec![Value::Text(key.into())], Duration::from_secs(5));
    request.from_peer = from_peer;
    tokio::time::timeout(Duration::from_secs(60), router.clone().call(request))
        .await
        .expect("the call never ended")
}

const THREE: [(&str, &str); 3] = [("h0", "here"), ("h1", "here"), ("h2", "here")];

#[tokio::test(start_paused = true)]
async fn a_keyed_call_runs_on_the_host_its_key_orders_first() {
    let (l1, l2) = (FakeLink::always(now("h1")), FakeLink::always(now("h2")));
    let router = keyed_router(
        &["f"],
        vec![
            peer("here", "h1", &l1, false),
            peer("here", "h2", &l2, false),
        ],
        by_first_argument(),
    );
    // Owned here: runs here, though peers serve it too.
    let mine = key_with_order(&THREE, &["h0", "h1", "h2"]);
    assert_eq!(call_key(&router, &mine, false).await, text("local"));
    // Owned by a peer: forwarded there, though this host serves it.
    let theirs = key_with_order(&THREE, &["h2", "h0", "h1"]);
    assert_eq!(call_key(&router, &theirs, false).await, text("h2"));
    assert_eq!(calls(&[l1.clone(), l2.clone()]), [0, 1]);
    // Forwarded to this host by a peer: it runs here whatever the key says
    // (the peer decided; a call never bounces between hosts).
    assert_eq!(call_key(&router, &theirs, true).await, text("local"));
    assert_eq!(calls(&[l1, l2]), [0, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_keyed_call_ignores_region_and_latency_and_follows_its_key() {
    // Not served here: the key picks among the peers, a far one included.
    let hosts = [("h1", "here"), ("f1", "far")];
    let (near, far) = (FakeLink::always(now("near")), FakeLink::always(now("far")));
    let router = keyed_router(
        &[],
        vec![
            peer("here", "h1", &near, false),
            peer("far", "f1", &far, false),
        ],
        by_first_argument(),
    );
    let far_key = key_with_order(&hosts, &["f1", "h1"]);
    let near_key = key_with_order(&hosts, &["h1", "f1"]);
    for _ in 0..3 {
        assert_eq!(call_key(&router, &far_key, false).await, text("far"));
        assert_eq!(call_key(&router, &near_key, false).await, text("near"));
    }
    // A call without its key is routed like any other: own region first.
    assert_eq!(call(&router, "f").await, text("near"));
}

#[tokio::test(start_paused = true)]
async fn the_owner_down_its_keys_go_to_their_next_host_and_come_back() {
    let (l1, l2) = (FakeLink::always(now("h1")), FakeLink::always(now("h2")));
    let (p1, p2) = (
        peer("here", "h1", &l1, false),
        peer("here", "h2", &l2, false),
    );
    let router = keyed_router(&["f"], vec![p1.clone(), p2.clone()], by_first_argument());
    let next_peer = key_with_order(&THREE, &["h1", "h2", "h0"]);
    let next_here = key_with_order(&THREE, &["h1", "h0", "h2"]);
    p1.link_down("killed".into());
    assert_eq!(call_key(&router, &next_peer, false).await, text("h2"));
    assert_eq!(call_key(&router, &next_here, false).await, text("local"));
    assert_eq!(calls(&[l1.clone(), l2.clone()]), [0, 1]);
    // Back: its keys return to it.
    let link: Arc<dyn Link> = l1.clone();
    p1.link_up(link);
    assert_eq!(call_key(&router, &next_peer, false).await, text("h1"));
    assert_eq!(call_key(&router, &next_here, false).await, text("h1"));
}

#[tokio::test(start_paused = true)]
async fn this_host_takes_a_key_its_owner_refused_only_when_it_surely_did_not_run() {
    let refusing = FakeLink::always(fails(ErrorCode::Unavailable, Processed::No));
    let lost = FakeLink::always(fails(ErrorCode::Unavailable, Processed::Maybe));
    let hosts = [("h0", "here"), ("h1", "here")];
    let key = key_with_order(&hosts, &["h1", "h0"]);
    // Draining (refused, did not run): the next host in the key's order,
    // this one, takes it.
    let router = keyed_router(
        &["f"],
        vec![peer("here", "h1", &refusing, false)],
        by_first_argument(),
    );
    assert_eq!(call_key(&router, &key, false).await, text("local"));
    assert_eq!(refusing.calls(), 1);
    // Lost during the call, not idempotent: it may have run; not again.
    let router = keyed_router(
        &["f"],
        vec![peer("here", "h1", &lost, false)],
        by_first_argument(),
    );
    let error = call_key(&router, &key, false).await.unwrap_err();
    assert_eq!(
        (error.code, error.processed),
        (ErrorCode::Unavailable, Processed::Maybe)
    );
    // Idempotent: it may run again, here.
    let lost = FakeLink::always(fails(ErrorCode::Unavailable, Processed::Maybe));
    let router = keyed_router(
        &["f"],
        vec![peer("here", "h1", &lost, true)],
        by_first_argument(),
    );
    assert_eq!(call_key(&router, &key, false).await, text("local"));
    // An answer of the owner's, even an error, is the answer.
    let handler = FakeLink::always(fails(ErrorCode::HandlerError, Processed::Yes));
    let router = keyed_router(
        &["f"],
        vec![peer("here", "h1", &handler, true)],
        by_first_argument(),
    );
    assert_eq!(
        call_key(&router, &key, false).await.unwrap_err().code,
        ErrorCode::HandlerError
    );
}

#[tokio::test(start_paused = true)]
async fn pinned_keys_go_to_their_regions_first_and_fall_back_by_key() {
    let raw = crate::region::keys::RawKeyRule::Table(
        toml::from_str("key = \"args[0]\"\npin = { \"eu-*\" = [\"eu\"] }").unwrap(),
    );
    let keys = Keys::new(vec![
        crate::region::keys::KeyRule::parse("f", &raw).unwrap(),
    ]);
    let (eu, us1, us2) = (
        FakeLink::always(now("eu")),
        FakeLink::always(now("us1")),
        FakeLink::always(now("us2")),
    );
    let eu_peer = peer("eu", "e1", &eu, false);
    let router = keyed_router(
        &[],
        vec![
            eu_peer.clone(),
            peer("us", "u1", &us1, false),
            peer("us", "u2", &us2, false),
        ],
        keys,
    );
    let hosts = [("e1", "eu"), ("u1", "us"), ("u2", "us")];
    // Some `eu-` key that the hash alone would give to a `us` host.
    let key = (0..)
        .map(|n| format!("eu-{n}"))
        .find(|key| key_order(&hosts, key, None)[0] == "u2")
        .unwrap();
    for _ in 0..3 {
        assert_eq!(call_key(&router, &key, false).await, text("eu"));
    }
    // A key of no pin follows the hash.
    let other = key_with_order(&hosts, &["u1", "e1", "u2"]);
    assert_eq!(call_key(&router, &other, false).await, text("us1"));
    // The pinned region down: the key's order over the others.
    eu_peer.link_down("partitioned".into());
    assert_eq!(call_key(&router, &key, false).await, text("us2"));
}

#[tokio::test(start_paused = true)]
async fn two_choices_spread_calls_over_alike_peers_but_never_lead_with_the_worst() {
    let hung = FakeLink::always(Answer::Never);
    let idle = FakeLink::always(now("x"));
    // Three peers of one tier: `a` idle, `b` with one call in flight, `c`
    // with two (scores rise with calls in flight).
    let (a, b, c) = (
        peer("r", "a", &idle, true),
        peer("r", "b", &hung, true),
        peer("r", "c", &hung, true),
    );
    let context = CallContext::new(Duration::from_secs(5));
    let mut held = Vec::new();
    for peer in [&b, &c, &c] {
        let mut call = Box::pin(peer.call("f", vec![], &context));
        assert!(futures::poll!(&mut call).is_pending());
        held.push(call);
    }
    let router = Arc::new(Router::new(
        "here",
        FakeLocal {
            functions: vec![],
            changes: watch::Sender::new(0),
        },
        Peers::fixed(vec![c.clone(), b.clone(), a.clone()]),
        vec![],
        no_hedging(),
    ));
    fastrand::seed(7);
    let mut first = std::collections::BTreeMap::new();
    for _ in 0..300 {
        let order = order(&router, "f");
        // The rest stays sorted by score.
        let mut rest = order[1..].to_vec();
        rest.sort_by_key(|addr| ["a", "b", "c"].iter().position(|x| x == addr));
        assert_eq!(order[1..], rest[..]);
        *first.entry(order[0].clone()).or_insert(0) += 1;
    }
    // `a` wins the pairs it is in (2 of 3), `b` the pair (b, c); `c` never.
    assert_eq!(first.get("c"), None);
    let (wins_a, wins_b) = (first["a"], first["b"]);
    assert!(
        (160..=240).contains(&wins_a) && wins_a + wins_b == 300,
        "{first:?}"
    );
    drop(held);
}
