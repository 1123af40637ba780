//! Our own HTTP server under hostile clients: half-sent headers (slowloris) neither block
//! other clients nor stay open forever (the binary); a request is answered within 30 s and
//! at most 1,024 connections are open at once (the accept loop, in-process).

use std::time::{Duration, Instant};

use apitoken_exporter::serve::{MAX_CONNECTIONS, REQUEST_TIMEOUT};
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::inproc::{self, read_response, send_get, serve_in_memory};
use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn slow_header_clients_are_cut_off_and_do_not_block_others() {
    let e = Exporter::start(&ConfigBuilder::new().yaml(), &[]);
    let addr = e.addr().to_string();
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // A well-behaved scrape is answered while every slow client is still connected: it
    // did not wait for them to be cut off.
    let started = Instant::now();
    let (status, _) = e.get("/metrics").await;
    assert_eq!(status, 200);
    for (i, s) in slow.iter().enumerate() {
        let mut buf = [0u8; 1];
        assert!(
            matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "slow client {i} was no longer open when the scrape was answered ({:?} in)",
            started.elapsed()
        );
    }

    // The half-sent requests are closed once the header timeout (10 s) passes.
    let deadline = Instant::now() + Duration::from_secs(20);
    for mut s in slow {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 512];
        let closed = tokio::time::timeout(left, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // a 408 may be written before closing
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "a slow client was kept open past the header timeout"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(9));
    assert_eq!(e.get("/-/healthy").await.0, 200);
}

// ---- the accept loop's limits, in-process (src/serve.rs) --------------------------------

/// A route that answers after `delay` (on tokio's clock), and one that never answers.
fn slow_routes(delay: Duration) -> Router {
    Router::new()
        .route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(delay).await;
                "done\n"
            }),
        )
        .route("/never", get(std::future::pending::<&'static str>))
}

#[tokio::test(start_paused = true)]
async fn a_request_unanswered_for_30_s_gets_503_and_one_answered_sooner_does_not() {
    // Paused clock: tokio jumps to the next timer whenever every task waits, so the 30 s
    // are virtual and the test takes milliseconds. The timeout is the real one.
    assert_eq!(REQUEST_TIMEOUT, Duration::from_secs(30));
    let server = serve_in_memory(slow_routes(REQUEST_TIMEOUT - Duration::from_secs(1)));

    let mut conn = server.connect();
    let started = tokio::time::Instant::now();
    send_get(&mut conn, "/slow").await.unwrap();
    let answer = read_response(&mut conn).await;
    assert_eq!(answer, Some((200, "done\n".to_string())));
    assert_eq!(
        started.elapsed().as_secs(),
        29,
        "answered after {:?}",
        started.elapsed()
    );

    let mut conn = server.connect();
    let started = tokio::time::Instant::now();
    send_get(&mut conn, "/never").await.unwrap();
    // Bounded (on the same clock): without the server's timeout nothing would answer.
    let answer = tokio::time::timeout(REQUEST_TIMEOUT * 2, read_response(&mut conn))
        .await
        .expect("no answer within twice the request timeout");
    let took = started.elapsed();
    assert_eq!(answer, Some((503, "request timed out\n".to_string())));
    assert!(
        took >= REQUEST_TIMEOUT && took < REQUEST_TIMEOUT + Duration::from_secs(1),
        "timed out after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_1024_are_closed_at_once_until_one_is_freed() {
    assert_eq!(MAX_CONNECTIONS, 1024);
    // The exporter's routes, plus one that holds its connection until released.
    let (release, released) = tokio::sync::watch::channel(false);
    let app = inproc::App::new();
    app.store.set_ready();
    let hold = move || {
        let mut released = released.clone();
        async move {
            let _ = released.wait_for(|r| *r).await;
            "held\n"
        }
    };
    let server = serve_in_memory(app.router().route("/hold", get(hold)));

    // 1,024 connections: the first idle (no request yet), the others waiting on /hold.
    let idle = server.connect();
    let mut held = Vec::new();
    for _ in 1..MAX_CONNECTIONS {
        let mut conn = server.connect();
        send_get(&mut conn, "/hold").await.unwrap();
        held.push(conn);
    }
    // The 1,025th is closed as soon as it is accepted, unanswered (not after the 10 s
    // header timeout).
    let mut extra = server.connect();
    let _ = send_get(&mut extra, "/-/healthy").await; // may find it closed already
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "connection 1,025 was not closed unanswered: {read:?} {:?}",
        String::from_utf8_lossy(&rest)
    );

    // One closes: a new connection is served again.
    drop(idle);
    let mut answered = None;
    for _ in 0..200 {
        let mut conn = server.connect();
        if send_get(&mut conn, "/-/healthy").await.is_ok() {
            answered = tokio::time::timeout(Duration::from_secs(5), read_response(&mut conn))
                .await
                .ok()
                .flatten();
        }
        if answered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answered, Some((200, "OK\n".to_string())));

    // Every connection at the cap was being served all along.
    release.send(true).unwrap();
    for (i, conn) in held.iter_mut().enumerate() {
        let answer = tokio::time::timeout(Duration::from_secs(10), read_response(conn)).await;
        assert_eq!(
            answer.ok().flatten(),
            Some((200, "held\n".to_string())),
            "held connection {}",
            i + 2
        );
    }
}
