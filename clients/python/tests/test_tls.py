"""TLS 1.3 against the cluster CA, bearer tokens in `hello`, and their refusals.

Certificates come from `wasmrpc certs` and tokens from `wasmrpc token new`,
as an operator makes them.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from conftest import region_hosts, run, wasmrpc_bin

import wasmrpc


def cli(*args: str) -> str:
    done = subprocess.run([str(wasmrpc_bin()), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def tls_cluster(hosts, regions):
    """A topology with a `[tls]` table and its certificates; returns its path."""
    config = hosts.cluster(regions)
    config.write_text(
        config.read_text()
        + '[tls]\nca = "certs/ca.crt"\ntrust_domain = "wasmrpc.test"\ncerts = "certs"\n'
    )
    cli("certs", "--config", str(config))
    return config


@pytest.fixture
def secure(hosts):
    """A TLS host of region `secure` with an access file holding token `ci`
    (allowed `math.*`); yields (host, config, token)."""
    config = tls_cluster(hosts, {"secure": (1, ["math", "greeter"])})
    access = config.parent / "access.toml"
    token = cli(
        "token", "new", "--name", "ci", "--functions", "math.*", "--access", str(access)
    ).strip()
    host = hosts.start(
        region="secure",
        listen=region_hosts(config, "secure")[0],
        config=config,
        args=["--access", str(access)],
    )
    yield host, config, token


def test_tls_and_a_token_call_what_the_token_allows(secure):
    host, config, token = secure
    ca = config.parent / "certs" / "ca.crt"

    async def main():
        async with await wasmrpc.connect(host.addr, ca=ca, token=token) as client:
            assert await client.call("math.add", 2, 3) == 5
            assert [f["name"] for f in await client.list()] == [
                "math.add",
                "math.divide",
                "math.stats",
            ]
            with pytest.raises(wasmrpc.PermissionDenied) as caught:
                await client.call("greeter.greet", "Ada", None, "english")
            assert (caught.value.message, caught.value.processed, caught.value.region) == (
                "token `ci` may not call `greeter.greet`",
                "no",
                "secure",
            )
            assert client.hosts()[0]["region"] == "secure"

        # The `[tls]` table of regions.toml names the CA for connect_region.
        async with await wasmrpc.connect_region(config, "secure", token=token) as client:
            assert await client.call("math.add", 40, 2) == 42

    run(main())


def test_refused_credentials_are_unauthenticated_and_say_why(secure, hosts):
    host, config, token = secure
    ca = config.parent / "certs" / "ca.crt"
    refused = f"`{host.addr}` refused the connection: "

    async def refusal(**options):
        with pytest.raises(wasmrpc.CallError) as caught:
            await wasmrpc.connect(host.addr, **options)
        assert caught.value.processed == "no"
        return caught.value

    async def main():
        error = await refusal(ca=ca)
        assert type(error) is wasmrpc.Unauthenticated
        assert error.message == refused + (
            "this host requires a token in `hello` (the CLI's --token, or WASMRPC_TOKEN)"
        )

        error = await refusal(ca=ca, token="wrpc_" + "0" * 64)
        assert type(error) is wasmrpc.Unauthenticated
        assert error.message == refused + "the token is not valid here: unknown, or revoked"

        # Plaintext at a TLS port: the host says so in a frame the client reads.
        error = await refusal(token=token)
        assert type(error) is wasmrpc.Unauthenticated
        assert error.message == refused + (
            "this host accepts TLS connections only: connect with TLS, trusting the cluster CA"
        )

        # A CA that did not sign the host's certificate.
        stranger = tls_cluster(hosts, {"elsewhere": (1, [])})
        error = await refusal(ca=stranger.parent / "certs" / "ca.crt", token=token)
        assert type(error) is wasmrpc.Unauthenticated
        assert error.message.startswith(refused + "the host's certificate was refused: ")
        assert "unable to get local issuer certificate" in error.message, error.message

        # A name the certificate does not carry.
        error = await refusal(ca=ca, token=token, server_name="billing.example")
        assert type(error) is wasmrpc.Unauthenticated
        assert error.message.startswith(refused + "the host's certificate was refused: ")
        assert "billing.example" in error.message, error.message

        # TLS at a plaintext port.
        plain = hosts.start(["math"])
        with pytest.raises(wasmrpc.Unauthenticated) as caught:
            await wasmrpc.connect(plain.addr, ca=ca)
        assert caught.value.message == (
            f"`{plain.addr}` refused the connection: "
            "the host did not answer with TLS: is this a plaintext port?"
        )

        # A token never goes in plaintext beyond loopback; nothing is dialled.
        with pytest.raises(wasmrpc.InvalidArgs) as caught:
            await wasmrpc.connect("192.0.2.1:7101", token=token)
        assert caught.value.message == (
            "refusing to send a token in plaintext to `192.0.2.1:7101`, which is not a "
            "loopback address: connect with TLS (the cluster CA)"
        )
        assert token not in str(caught.value)

        # The host still serves callers with the right credentials.
        async with await wasmrpc.connect(host.addr, ca=ca, token=token) as client:
            assert await client.call("math.add", 1, 1) == 2

    run(main())


def test_a_revoked_token_ends_its_connection_and_is_refused_after(secure):
    host, config, token = secure
    ca = config.parent / "certs" / "ca.crt"
    access = config.parent / "access.toml"

    async def main():
        async with await wasmrpc.connect(host.addr, ca=ca, token=token) as client:
            assert await client.call("math.add", 2, 3) == 5
            # A new access file without `ci`, swapped in whole.
            replacement = config.parent / "access-new.toml"
            cli("token", "new", "--name", "other", "--functions", "*", "--access", str(replacement))
            replacement.replace(access)

            async def refused():
                try:
                    await client.call("math.add", 1, 1, timeout=1)
                except wasmrpc.Unauthenticated as e:
                    return e
                except wasmrpc.Unavailable:
                    return None  # the connection that ended; redialling is refused next
                return None

            error = None
            for _ in range(100):
                error = await refused()
                if error is not None:
                    break
                await asyncio.sleep(0.05)
            assert error is not None, host.log()
            assert (error.message, error.processed) == (
                f"`{host.addr}` refused the connection: "
                "the token is not valid here: unknown, or revoked",
                "no",
            )
        log = host.log()
        assert "changed: new calls follow it, revoked tokens' connections close" in log, log
        assert "refused a connection: the token is not valid here: unknown, or revoked" in log

    run(main())
