//! PROTOCOL.md is enough to write a client: its Python example client, taken
//! from the document as is, talks to a real host.

use std::process::Command;

use wasmrpc_tests::{HostProcess, workspace_root};

#[test]
fn the_python_client_in_protocol_md_works_against_a_real_host() {
    let doc = std::fs::read_to_string(workspace_root().join("PROTOCOL.md")).unwrap();
    let appendix = doc
        .split("## Appendix: a minimal client in Python")
        .nth(1)
        .expect("PROTOCOL.md has the Python appendix");
    let script = appendix
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the appendix holds a python block");
    let host = HostProcess::start(&["math", "greeter"]);
    let script = script.replace(
        "Wasmrpc(port=7101)",
        &format!("Wasmrpc(port={})", host.addr.port()),
    );
    assert_ne!(script, "", "the python block is empty");
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs (it ships with these machines)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "5\n2.5\n('handler_error', 'division by zero', 'yes')\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
