//! The README's start command brings up the sample regions and its tour
//! works as printed: the demo layout (`cargo xtask plugins`) served by
//! `wasmrpc up` from the sample `regions.toml`.

use std::process::Command;

use wasmrpc_tests::{wasmrpc_bin, workspace_root};

/// One `$ wasmrpc ...` line of the README and the output printed under it.
struct Step {
    command: String,
    expected: String,
}

fn tour_steps(readme: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for block in readme.split("<!-- tour:start -->").skip(1) {
        let block = block
            .split("<!-- tour:end -->")
            .next()
            .expect("tour block ends");
        for line in block.lines() {
            if let Some(command) = line.strip_prefix("$ ") {
                steps.push(Step {
                    command: command.to_owned(),
                    expected: String::new(),
                });
            } else if !line.starts_with("```") && !line.is_empty() {
                let step = steps.last_mut().expect("output follows a command");
                step.expected.push_str(line);
                step.expected.push('\n');
            }
        }
    }
    steps
}

/// Splits a command line the way a POSIX shell does for what the README
/// uses: words separated by spaces, single quotes taken literally.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            ' ' if in_word => {
                words.push(std::mem::take(&mut word));
                in_word = false;
            }
            ' ' => {}
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// `wasmrpc up` on the demo layout, with the sample's ports swapped for free
/// ones; stopped with SIGTERM when dropped.
struct Up {
    child: std::process::Child,
    /// Sample address (`127.0.0.1:7101`) → the address used here.
    ports: Vec<(String, String)>,
}

impl Up {
    fn start(demo: &std::path::Path) -> Up {
        let config = demo.join("regions.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        let mut ports = Vec::new();
        for sample in [
            "127.0.0.1:7101",
            "127.0.0.1:7201",
            "127.0.0.1:7202",
            "127.0.0.1:7301",
        ] {
            assert!(
                text.contains(sample),
                "the sample regions.toml no longer has {sample}"
            );
            let free = wasmrpc_tests::free_addr().to_string();
            text = text.replace(sample, &free);
            ports.push((sample.to_owned(), free));
        }
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(demo.join("up.log")).unwrap();
        let mut command = Command::new(wasmrpc_bin());
        command
            .args(["up", "--config", config.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log);
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start wasmrpc up");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        while seen
            .iter()
            .filter(|l: &&String| l.contains("listening on"))
            .count()
            < 4
        {
            match rx.recv_timeout(std::time::Duration::from_secs(120)) {
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "`wasmrpc up` did not bring up four hosts; stdout: {seen:#?}\nstderr:\n{}",
                    std::fs::read_to_string(demo.join("up.log")).unwrap_or_default()
                ),
            }
        }
        Up { child, ports }
    }

    fn addr(&self, sample: &str) -> String {
        self.ports
            .iter()
            .find(|(s, _)| s == sample)
            .unwrap()
            .1
            .clone()
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(15) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the host at `addr` lists `function` served by `regions`.
fn wait_for_catalog(addr: &str, function: &str, regions: &[&str]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = wasmrpc::Client::connect(addr).await.unwrap();
        let start = std::time::Instant::now();
        loop {
            let catalog = client.list().await.unwrap();
            if catalog
                .iter()
                .any(|f| f.name == function && f.regions == regions)
            {
                return;
            }
            assert!(
                start.elapsed().as_secs() < 10,
                "{addr} never listed {function} in {regions:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn the_readme_start_command_brings_up_three_regions_and_the_tour_prints_what_it_says() {
    let demo = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(workspace_root())
        .args(["xtask", "plugins", "--out"])
        .arg(demo.path())
        .status()
        .expect("run cargo xtask plugins");
    assert!(status.success());
    let up = Up::start(demo.path());
    let eu = up.addr("127.0.0.1:7101");
    wait_for_catalog(&eu, "inventory.stock.reserve", &["ap-south"]);
    wait_for_catalog(&eu, "orders.place", &["us-east"]);
    wait_for_catalog(&eu, "math.add", &["eu-west", "us-east"]);
    for us in ["127.0.0.1:7201", "127.0.0.1:7202"] {
        wait_for_catalog(&up.addr(us), "inventory.stock.reserve", &["ap-south"]);
    }

    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let steps = tour_steps(&readme);
    assert_eq!(steps.len(), 20, "the README tour has 20 commands");
    for step in steps {
        let words = shell_words(&step.command);
        assert_eq!(
            words[0], "wasmrpc",
            "tour commands run wasmrpc: {}",
            step.command
        );
        let out = Command::new(wasmrpc_bin())
            .args(&words[1..])
            .env("WASMRPC_HOST", &eu)
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            printed, step.expected,
            "`{}` printed something else",
            step.command
        );
        let expected_code = if step.expected.starts_with("error[") {
            1
        } else {
            0
        };
        assert_eq!(out.status.code(), Some(expected_code), "`{}`", step.command);
    }
    assert_eq!(
        up.stop(),
        Some(0),
        "`wasmrpc up` stops every host gracefully on SIGTERM"
    );
}

#[test]
fn shell_words_keep_quoted_json_whole() {
    assert_eq!(
        shell_words(r#"wasmrpc call greeter.area '{"rectangle": [2, 3.5]}' 2"#),
        vec![
            "wasmrpc",
            "call",
            "greeter.area",
            r#"{"rectangle": [2, 3.5]}"#,
            "2"
        ]
    );
}
