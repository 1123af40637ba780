//! Our own HTTP server under hostile clients: half-sent headers (slowloris) neither block
//! other clients nor stay open forever.

use std::time::{Duration, Instant};

use crate::harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
