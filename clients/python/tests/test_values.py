"""Every WIT type family through `greeter.echo.*`, with exact values both ways."""

from __future__ import annotations

import math

import pytest
from conftest import run

import wasmrpc

RECORD = {"name": "Ada", "age": 36, "nick-name": "countess"}

# (function, arguments, expected result): the Python value sent, and the
# Python value the client decodes from the host's answer.
ROUND_TRIPS = [
    ("echo-bool", [True], True),
    ("echo-bool", [False], False),
    ("echo-s8", [-128], -128),
    ("echo-s8", [127], 127),
    ("echo-u8", [255], 255),
    ("echo-s16", [-32768], -32768),
    ("echo-u16", [65535], 65535),
    ("echo-s32", [-2147483648], -2147483648),
    ("echo-u32", [4294967295], 4294967295),
    ("echo-s64", [-9223372036854775808], -9223372036854775808),
    ("echo-s64", [9223372036854775807], 9223372036854775807),
    ("echo-u64", [18446744073709551615], 18446744073709551615),
    ("echo-f32", [1.5], 1.5),
    ("echo-f32", [-0.25], -0.25),
    ("echo-f32", [3], 3.0),
    # f32 rounds: 0.1 comes back as the nearest f32.
    ("echo-f32", [0.1], 0.10000000149011612),
    ("echo-f64", [0.1], 0.1),
    ("echo-f64", [-1e300], -1e300),
    ("echo-f64", [2], 2.0),
    ("echo-char", ["é"], "é"),
    ("echo-char", ["🦀"], "🦀"),
    ("echo-string", [""], ""),
    ("echo-string", ["grüße, 世界"], "grüße, 世界"),
    ("echo-bytes", [b"\x00\x01\xfe\xff"], b"\x00\x01\xfe\xff"),
    # list<u8> also accepts a list of integers; it always comes back as bytes.
    ("echo-bytes", [[0, 1, 254, 255]], b"\x00\x01\xfe\xff"),
    ("echo-bytes", [b""], b""),
    ("echo-list", [["a", "b", ""]], ["a", "b", ""]),
    ("echo-list", [[]], []),
    ("echo-tuple", [[7, "seven", True]], [7, "seven", True]),
    # A Python tuple is sent as an array too.
    ("echo-tuple", [(7, "seven", False)], [7, "seven", False]),
    ("echo-record", [RECORD], RECORD),
    (
        "echo-record",
        [{"nick-name": None, "age": 0, "name": ""}],
        {"name": "", "age": 0, "nick-name": None},
    ),
    (
        "echo-list-of-records",
        [[{"name": "a", "age": 1, "nick-name": None}, {"name": "b", "age": 2, "nick-name": "bee"}]],
        [{"name": "a", "age": 1, "nick-name": None}, {"name": "b", "age": 2, "nick-name": "bee"}],
    ),
    ("echo-variant", [{"none": None}], {"none": None}),
    ("echo-variant", ["none"], {"none": None}),
    ("echo-variant", [{"count": 42}], {"count": 42}),
    ("echo-variant", [{"text": "hi"}], {"text": "hi"}),
    ("echo-variant", [{"pair": [-1, 65535]}], {"pair": [-1, 65535]}),
    ("echo-enum", ["green"], "green"),
    ("echo-option", [None], None),
    ("echo-option", ["x"], "x"),
    ("echo-nested-option", [None], None),
    ("echo-nested-option", [[None]], [None]),
    ("echo-nested-option", [[5]], [5]),
    # A top-level result: ok is unwrapped; nested results are {"ok": v}.
    ("echo-result", [{"ok": "fine"}], "fine"),
    ("echo-unit-result", [{"ok": None}], None),
    ("echo-unit-result", ["ok"], None),
    ("echo-flags", [[]], []),
    ("echo-flags", [["exec", "read"]], ["read", "exec"]),
    ("echo-flags", [["write", "write"]], ["write"]),
]


def test_every_wit_type_family_round_trips_with_exact_values(hosts):
    host = hosts.start(["greeter"])

    async def main():
        async with await wasmrpc.connect(host.addr) as client:
            for function, args, expected in ROUND_TRIPS:
                name = f"greeter.echo.{function}"
                value = await client.call(name, *args)
                assert value == expected, f"{name}{args!r}"
                assert type(value) is type(expected), f"{name}{args!r}: {value!r}"

            # Non-finite floats cross as CBOR floats.
            assert await client.call("greeter.echo.echo-f64", math.inf) == math.inf
            assert await client.call("greeter.echo.echo-f64", -math.inf) == -math.inf
            assert math.isnan(await client.call("greeter.echo.echo-f32", math.nan))

            # A mebibyte of bytes, whole.
            mebibyte = bytes(i % 251 for i in range(1 << 20))
            assert await client.call("greeter.echo.echo-bytes", mebibyte) == mebibyte

            # Functions of several parameters, computing exact answers.
            assert await client.call("greeter.greet", "Ada", "Dr.", "english") == "Hello, Dr. Ada!"
            assert await client.call("greeter.greet", "Ada", None, "french") == "Bonjour, Ada!"
            assert (
                await client.call("greeter.decorate", "hi", ["bold", "italic", "shout"])
                == "_**HI**_"
            )
            assert await client.call("greeter.area", {"rectangle": [2, 3.5]}) == 7.0
            assert await client.call("greeter.area", "point") == 0.0
            assert await client.call("greeter.initial", "") is None
            assert await client.call("greeter.checksum", b"\x01\x02\xfa") == [253, b"\xfa\x02\x01"]

    run(main())


def test_result_errors_carry_the_decoded_error_value(hosts):
    host = hosts.start(["greeter", "inventory"])

    async def main():
        async with await wasmrpc.connect(host.addr) as client:
            with pytest.raises(wasmrpc.HandlerError) as caught:
                await client.call("greeter.echo.echo-result", {"err": 7})
            assert (caught.value.message, caught.value.detail, caught.value.processed) == (
                "7",
                7,
                "yes",
            )
            assert caught.value.region == "test"

            with pytest.raises(wasmrpc.HandlerError) as caught:
                await client.call("greeter.echo.echo-unit-result", "err")
            assert caught.value.message == "`greeter.echo.echo-unit-result` returned an error"
            assert caught.value.detail is None

            with pytest.raises(wasmrpc.HandlerError) as caught:
                await client.call("inventory.stock.reserve", "sku-2", 5)
            assert caught.value.detail == {"insufficient": 3}
            assert caught.value.message == '{"insufficient":3}'

            reserved = await client.call("inventory.stock.reserve", "sku-1", 2)
            assert reserved == {
                "sku": "sku-1",
                "quantity": 2,
                "warehouse": "lisbon",
                "reservation-id": "R-sku-1-2",
            }

    run(main())


# (function, arguments, the host's exact `invalid_args` message)
INVALID = [
    ("math.add", [1], "`math.add` takes 2 arguments (a: s64, b: s64), got 1"),
    ("math.add", [1, "2"], 'parameter `b`: expected an integer (s64), got text "2"'),
    ("math.add", [1.5, 2], "parameter `a`: expected an integer (s64), got float 1.5"),
    ("greeter.echo.echo-u8", [256], "parameter `v`: 256 is out of range for u8"),
    ("greeter.echo.echo-u64", [-1], "parameter `v`: -1 is out of range for u64"),
    (
        "greeter.echo.echo-u64",
        [2**64],
        "parameter `v`: 18446744073709551616 is out of range for u64",
    ),
    (
        "greeter.echo.echo-record",
        [{"name": "a", "age": 3}],
        "parameter `v`: missing field `nick-name`",
    ),
    (
        "greeter.echo.echo-record",
        [{"name": "a", "age": 3, "nick_name": None}],
        "parameter `v`: unknown field `nick_name`",
    ),
    (
        "greeter.echo.echo-enum",
        ["purple"],
        "parameter `v`: unknown case `purple`; expected one of red, green, blue",
    ),
    (
        "greeter.echo.echo-string",
        [b"bytes"],
        "parameter `v`: expected text, got bytes (5 bytes)",
    ),
    (
        "greeter.echo.echo-nested-option",
        [5],
        "parameter `v`: expected null or an array of one element (some of an option), "
        "got integer 5",
    ),
]


def test_invalid_arguments_are_refused_by_the_host_naming_the_parameter(hosts):
    host = hosts.start(["math", "greeter"])

    async def main():
        async with await wasmrpc.connect(host.addr) as client:
            for function, args, message in INVALID:
                with pytest.raises(wasmrpc.InvalidArgs) as caught:
                    await client.call(function, *args)
                assert (caught.value.message, caught.value.processed, caught.value.region) == (
                    message,
                    "no",
                    "test",
                ), f"{function}{args!r}"
            # Values CBOR cannot carry are refused before anything is sent.
            with pytest.raises(wasmrpc.InvalidArgs) as caught:
                await client.call("greeter.echo.echo-string", object())
            assert caught.value.processed == "no" and caught.value.region is None
            assert caught.value.message.startswith(
                "cannot send the request: cannot encode the call"
            )
            assert await client.call("math.add", 2, 3) == 5

    run(main())
