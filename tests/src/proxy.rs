//! A TCP proxy that adds latency, and can stall or cut a link: distance and
//! partitions between regions on loopback (no netem on these machines).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// A running proxy in front of `target`.
pub struct Proxy {
    /// Where to connect instead of the target.
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: AbortHandle,
}

struct State {
    target: SocketAddr,
    delay: Mutex<Duration>,
    stalled: AtomicBool,
    resumed: Notify,
    cut: AtomicBool,
    links: Mutex<Vec<AbortHandle>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`, delaying
    /// every byte by `delay` in each direction.
    pub async fn start(target: SocketAddr, delay: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        Proxy::start_on(listener, target, delay)
    }

    /// Like [`Proxy::start`] on a given listener (e.g. a reserved port).
    pub fn start_on(listener: TcpListener, target: SocketAddr, delay: Duration) -> Proxy {
        let addr = listener.local_addr().expect("proxy addr");
        let state = Arc::new(State {
            target,
            delay: Mutex::new(delay),
            stalled: AtomicBool::new(false),
            resumed: Notify::new(),
            cut: AtomicBool::new(false),
            links: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, state.clone())).abort_handle();
        Proxy {
            addr,
            state,
            accept,
        }
    }

    /// Changes the one-way delay for bytes read from now on.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Holds every byte until [`Proxy::resume`], like a link dropping all
    /// packets while TCP keeps retrying. Connections stay open.
    pub fn stall(&self) {
        self.state.stalled.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.state.stalled.store(false, Ordering::SeqCst);
        self.state.resumed.notify_waiters();
    }

    /// Closes every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for link in self.state.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for link in self.state.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        if state.cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let state2 = state.clone();
        let link = tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(state2.target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            let up = pump(in_read, out_write, state2.clone());
            let down = pump(out_read, in_write, state2);
            tokio::join!(up, down);
        });
        state.links.lock().unwrap().push(link.abort_handle());
    }
}

/// Copies one direction, delivering each chunk `delay` after it was read.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<State>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer_state = state.clone();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            while writer_state.stalled.load(Ordering::SeqCst) {
                let resumed = writer_state.resumed.notified();
                if !writer_state.stalled.load(Ordering::SeqCst) {
                    break;
                }
                resumed.await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let delay = *state.delay.lock().unwrap();
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}
