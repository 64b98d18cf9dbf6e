//! The README's tour works as printed, against a host started from the demo
//! layout (`cargo xtask plugins` + the sample `regions.toml`).

use std::process::Command;

use wasmrpc_tests::{HostProcess, wasmrpc_bin, workspace_root};

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

#[test]
fn the_readme_tour_prints_what_it_says() {
    let demo = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(workspace_root())
        .args(["xtask", "plugins", "--out"])
        .arg(demo.path())
        .status()
        .expect("run cargo xtask plugins");
    assert!(status.success());
    let config = demo.path().join("regions.toml");
    let host = HostProcess::spawn(
        &[
            "host",
            "--region",
            "eu-west",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
        None,
    );

    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let steps = tour_steps(&readme);
    assert_eq!(steps.len(), 18, "the README tour has 18 commands");
    for step in steps {
        let words = shell_words(&step.command);
        assert_eq!(
            words[0], "wasmrpc",
            "tour commands run wasmrpc: {}",
            step.command
        );
        let out = Command::new(wasmrpc_bin())
            .args(&words[1..])
            .env("WASMRPC_HOST", host.host_arg())
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
