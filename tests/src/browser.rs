//! Headless Chromium, driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: commands in on fd 3, replies and events out
//! on fd 4, each a JSON message ended by a NUL byte), so that a test can
//! keep one page open while the hosts behind it change, and read its live
//! DOM. A pipe needs no port and no websocket client.

use std::fs::File;
use std::io::{BufRead, BufReader, PipeWriter, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

/// How long one DevTools command may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// The Chromium binary: `$WASMRPC_CHROMIUM`, else Debian's `/usr/bin/chromium`.
///
/// # Panics
///
/// When it is missing, saying how to install it: a dashboard test must not
/// pass by not running.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("WASMRPC_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.is_file(),
        "Chromium not found at `{}`: the dashboard tests need a headless Chromium. \
         Install Debian's package (`apt-get install chromium`) or set WASMRPC_CHROMIUM \
         to a Chromium or Chrome binary",
        path.display()
    );
    path
}

/// A headless Chromium process with one page open; the browser and every
/// process it started are killed when this is dropped.
pub struct Browser {
    child: Child,
    commands: PipeWriter,
    replies: Receiver<Value>,
    next_id: u64,
    /// The page's DevTools session.
    session: String,
    profile: TempDir,
}

impl Browser {
    /// Starts Chromium and opens `url` in a 1280×800 page; the page goes on
    /// loading and running while the caller reads it with
    /// [`Browser::eval`].
    ///
    /// # Panics
    ///
    /// When Chromium is missing or does not answer.
    pub fn open(url: &str) -> Browser {
        let chromium = chromium();
        let profile = tempfile::tempdir().expect("tempdir");
        let stderr = File::create(profile.path().join("chromium.log")).expect("chromium log");
        let (to_browser, commands) = std::io::pipe().expect("pipe");
        let (replies_reader, from_browser) = std::io::pipe().expect("pipe");
        let (read_fd, write_fd) = (to_browser.as_raw_fd(), from_browser.as_raw_fd());
        let mut command = Command::new(&chromium);
        command
            .args([
                "--headless",
                // The tests run as root, where Chromium refuses its sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Its own process group, so that drop can end the renderer and
            // the other helpers with it.
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec, where
        // only async-signal-safe calls are allowed: fcntl(2), dup2(2),
        // close(2) and prctl(2) are, and take integers only.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // Move both ends above 3 and 4 first, so that neither is
                // overwritten by the other's dup2; dup2 clears close-on-exec.
                let high = |fd: RawFd| libc::fcntl(fd, libc::F_DUPFD, 10);
                let (read_high, write_high) = (high(read_fd), high(write_fd));
                if read_high < 0
                    || write_high < 0
                    || libc::dup2(read_high, 3) < 0
                    || libc::dup2(write_high, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(read_high);
                libc::close(write_high);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", chromium.display()));
        // The browser's ends now live in the browser only.
        drop((to_browser, from_browser));
        let (tx, replies) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(replies_reader);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop_if(|b| *b == 0);
                if let Ok(value) = serde_json::from_slice(&message)
                    && tx.send(value).is_err()
                {
                    return;
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands,
            replies,
            next_id: 0,
            session: String::new(),
            profile,
        };
        let target = browser.send("Target.createTarget", json!({ "url": url }), None);
        let target_id = target["targetId"].clone();
        let attached = browser.send(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
            None,
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    /// Evaluates `expression` in the page and returns its value (JSON).
    ///
    /// # Panics
    ///
    /// When the expression throws or the browser does not answer.
    pub fn eval(&mut self, expression: &str) -> Value {
        let session = self.session.clone();
        let reply = self.send(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            Some(&session),
        );
        assert!(
            reply.get("exceptionDetails").is_none(),
            "`{expression}` threw: {reply}"
        );
        reply["result"]["value"].clone()
    }

    /// What Chromium printed to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default()
    }

    /// Sends one command and waits for its reply, passing over events.
    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("json");
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap_or_else(|e| {
            panic!(
                "cannot send {method} to Chromium ({e}); log:\n{}",
                self.log()
            )
        });
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(reply) if reply["id"] == json!(id) => {
                    assert!(
                        reply.get("error").is_none(),
                        "Chromium refused {method}: {reply}"
                    );
                    return reply["result"].clone();
                }
                Ok(_event) => {}
                Err(RecvTimeoutError::Timeout) => panic!(
                    "Chromium did not answer {method} within {REPLY_TIMEOUT:?}; log:\n{}",
                    self.log()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("Chromium exited during {method}; log:\n{}", self.log())
                }
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(group) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) takes integers and touches no memory. The
            // group is the one the browser leads (`process_group(0)`), and
            // the browser is not reaped yet, so its id names no other group.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}
