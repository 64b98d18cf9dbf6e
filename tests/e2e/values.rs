//! The CBOR mapping of every WIT type family, through the real client.

use ciborium::Value;
use wasmrpc::{ErrorCode, Processed};
use wasmrpc_tests::{HostProcess, assert_call_error, cbor, json};

/// (function of `echo`, arguments as JSON, expected result as JSON): also
/// what the Python and JavaScript examples must answer (`languages.rs`).
pub(crate) const ROUND_TRIPS: &[(&str, &str, &str)] = &[
    ("echo-bool", "[true]", "true"),
    ("echo-bool", "[false]", "false"),
    ("echo-s8", "[-128]", "-128"),
    ("echo-s8", "[127]", "127"),
    ("echo-u8", "[255]", "255"),
    ("echo-s16", "[-32768]", "-32768"),
    ("echo-u16", "[65535]", "65535"),
    ("echo-s32", "[-2147483648]", "-2147483648"),
    ("echo-u32", "[4294967295]", "4294967295"),
    ("echo-s64", "[-9223372036854775808]", "-9223372036854775808"),
    ("echo-s64", "[9223372036854775807]", "9223372036854775807"),
    ("echo-u64", "[18446744073709551615]", "18446744073709551615"),
    ("echo-f32", "[1.5]", "1.5"),
    ("echo-f32", "[-0.25]", "-0.25"),
    ("echo-f32", "[3]", "3.0"),
    ("echo-f64", "[0.1]", "0.1"),
    ("echo-f64", "[-1e300]", "-1e+300"),
    ("echo-char", "[\"é\"]", "\"é\""),
    ("echo-char", "[\"🦀\"]", "\"🦀\""),
    ("echo-string", "[\"\"]", "\"\""),
    ("echo-string", "[\"grüße, 世界\"]", "\"grüße, 世界\""),
    ("echo-bytes", "[[0, 1, 254, 255]]", "[0,1,254,255]"),
    ("echo-bytes", "[[]]", "[]"),
    ("echo-list", "[[\"a\", \"b\", \"\"]]", "[\"a\",\"b\",\"\"]"),
    ("echo-list", "[[]]", "[]"),
    ("echo-tuple", "[[7, \"seven\", true]]", "[7,\"seven\",true]"),
    (
        "echo-record",
        "[{\"name\": \"Ada\", \"age\": 36, \"nick-name\": \"countess\"}]",
        "{\"name\":\"Ada\",\"age\":36,\"nick-name\":\"countess\"}",
    ),
    (
        "echo-record",
        "[{\"nick-name\": null, \"age\": 0, \"name\": \"\"}]",
        "{\"name\":\"\",\"age\":0,\"nick-name\":null}",
    ),
    (
        "echo-list-of-records",
        "[[{\"name\": \"a\", \"age\": 1, \"nick-name\": null}, {\"name\": \"b\", \"age\": 2, \"nick-name\": \"bee\"}]]",
        "[{\"name\":\"a\",\"age\":1,\"nick-name\":null},{\"name\":\"b\",\"age\":2,\"nick-name\":\"bee\"}]",
    ),
    ("echo-variant", "[{\"none\": null}]", "{\"none\":null}"),
    ("echo-variant", "[\"none\"]", "{\"none\":null}"),
    ("echo-variant", "[{\"count\": 42}]", "{\"count\":42}"),
    ("echo-variant", "[{\"text\": \"hi\"}]", "{\"text\":\"hi\"}"),
    (
        "echo-variant",
        "[{\"pair\": [-1, 65535]}]",
        "{\"pair\":[-1,65535]}",
    ),
    ("echo-enum", "[\"green\"]", "\"green\""),
    ("echo-option", "[null]", "null"),
    ("echo-option", "[\"x\"]", "\"x\""),
    ("echo-nested-option", "[null]", "null"),
    ("echo-nested-option", "[[null]]", "[null]"),
    ("echo-nested-option", "[[5]]", "[5]"),
    ("echo-result", "[{\"ok\": \"fine\"}]", "\"fine\""),
    ("echo-unit-result", "[{\"ok\": null}]", "null"),
    ("echo-flags", "[[]]", "[]"),
    (
        "echo-flags",
        "[[\"exec\", \"read\"]]",
        "[\"read\",\"exec\"]",
    ),
    ("echo-flags", "[[\"write\", \"write\"]]", "[\"write\"]"),
];

pub(crate) fn args(json_array: &str) -> Vec<Value> {
    match cbor(json_array) {
        Value::Array(items) => items,
        other => panic!("not an array: {other:?}"),
    }
}

#[tokio::test]
async fn every_wit_type_family_round_trips_with_exact_values() {
    let host = HostProcess::start(&["greeter"]);
    let client = host.client().await;
    for (function, arguments, expected) in ROUND_TRIPS {
        let name = format!("greeter.echo.{function}");
        let value = client
            .call_value(&name, args(arguments))
            .await
            .unwrap_or_else(|e| panic!("{name}({arguments}) failed: {e}"));
        assert_eq!(json(&value), *expected, "{name}({arguments})");
    }
}

#[tokio::test]
async fn byte_strings_and_special_floats_keep_their_cbor_form() {
    let host = HostProcess::start(&["greeter"]);
    let client = host.client().await;
    // list<u8> comes back as a CBOR byte string, whichever form went in.
    let bytes = client
        .call_value("greeter.echo.echo-bytes", vec![Value::Bytes(vec![9, 8, 7])])
        .await
        .unwrap();
    assert_eq!(bytes, Value::Bytes(vec![9, 8, 7]));
    let bytes = client
        .call_value("greeter.echo.echo-bytes", vec![cbor("[1, 2]")])
        .await
        .unwrap();
    assert_eq!(bytes, Value::Bytes(vec![1, 2]));
    // Non-finite floats cross as CBOR floats.
    let inf = client
        .call_value("greeter.echo.echo-f64", vec![Value::Float(f64::INFINITY)])
        .await
        .unwrap();
    assert_eq!(inf, Value::Float(f64::INFINITY));
    let nan = client
        .call_value("greeter.echo.echo-f32", vec![Value::Float(f64::NAN)])
        .await
        .unwrap();
    assert!(matches!(nan, Value::Float(f) if f.is_nan()));
}

/// Signatures with a `list<u8>` (here `echo-bytes`, `frame` and
/// `misbehave.big`) are called through wasmtime's typed API, which copies
/// byte strings whole; the answers are those of the dynamic path.
#[tokio::test]
async fn byte_strings_are_copied_whole() {
    let host = HostProcess::start(&["greeter", "misbehave"]);
    let client = host.client().await;
    let mebibyte: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let echoed = client
        .call_value(
            "greeter.echo.echo-bytes",
            vec![Value::Bytes(mebibyte.clone())],
        )
        .await
        .unwrap();
    assert_eq!(echoed, Value::Bytes(mebibyte));
    let empty = client
        .call_value("greeter.echo.echo-bytes", vec![Value::Bytes(Vec::new())])
        .await
        .unwrap();
    assert_eq!(empty, Value::Bytes(Vec::new()));

    // Two parameters of different kinds, in order; `result<list<u8>, string>`.
    let framed = client
        .call_value(
            "greeter.frame",
            vec![Value::Text("né".into()), Value::Bytes(vec![0, 255])],
        )
        .await
        .unwrap();
    assert_eq!(framed, Value::Bytes(vec![b'n', 0xc3, 0xa9, b':', 0, 255]));
    let err = assert_call_error(
        client
            .call_value(
                "greeter.frame",
                vec![Value::Text("x".into()), Value::Bytes(Vec::new())],
            )
            .await,
        ErrorCode::HandlerError,
        Processed::Yes,
        "nothing to frame under `x`",
    );
    assert_eq!(
        err.detail,
        Some(Value::Text("nothing to frame under `x`".into()))
    );

    // A scalar parameter and a byte-string result.
    let big = client
        .call_value("misbehave.big", vec![Value::from(100_000)])
        .await
        .unwrap();
    assert_eq!(big, Value::Bytes(vec![7; 100_000]));
}

#[tokio::test]
async fn result_err_becomes_handler_error_carrying_the_error_value() {
    let host = HostProcess::start(&["greeter", "inventory"]);
    let client = host.client().await;
    let err = assert_call_error(
        client
            .call_value("greeter.echo.echo-result", args("[{\"err\": 7}]"))
            .await,
        ErrorCode::HandlerError,
        Processed::Yes,
        "7",
    );
    assert_eq!(err.detail, Some(Value::from(7)));
    assert_eq!(err.region.as_deref(), Some("test"));

    let err = client
        .call_value("greeter.echo.echo-unit-result", args("[{\"err\": null}]"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::HandlerError);
    assert_eq!(
        err.message,
        "`greeter.echo.echo-unit-result` returned an error"
    );
    assert_eq!(err.detail, None);

    let err = client
        .call_value("inventory.stock.reserve", args("[\"sku-2\", 5]"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::HandlerError);
    assert_eq!(err.detail, Some(cbor("{\"insufficient\": 3}")));
    assert_eq!(err.message, "{\"insufficient\":3}");

    let ok = client
        .call_value("inventory.stock.reserve", args("[\"sku-1\", 2]"))
        .await
        .unwrap();
    assert_eq!(
        json(&ok),
        "{\"sku\":\"sku-1\",\"quantity\":2,\"warehouse\":\"lisbon\",\"reservation-id\":\"R-sku-1-2\"}"
    );
}

/// (function of the greeter world, arguments as JSON, expected result as
/// JSON): also what the Python and JavaScript examples must answer.
pub(crate) const GREETER_ANSWERS: &[(&str, &str, &str)] = &[
    (
        "greet",
        "[\"Ada\", \"Dr.\", \"english\"]",
        "\"Hello, Dr. Ada!\"",
    ),
    ("greet", "[\"Ada\", null, \"french\"]", "\"Bonjour, Ada!\""),
    ("greet", "[\"Ada\", null, \"spanish\"]", "\"Hola, Ada!\""),
    (
        "decorate",
        "[\"hi\", [\"bold\", \"italic\", \"shout\"]]",
        "\"_**HI**_\"",
    ),
    ("decorate", "[\"hi\", []]", "\"hi\""),
    ("area", "[{\"rectangle\": [2, 3.5]}]", "7.0"),
    ("area", "[{\"point\": null}]", "0.0"),
    ("area", "[{\"circle\": 1}]", "3.141592653589793"),
    ("initial", "[\"Zoë\"]", "\"Z\""),
    ("initial", "[\"\"]", "null"),
    ("checksum", "[[1, 2, 250]]", "[253,[250,2,1]]"),
    ("frame", "[\"id\", [1, 2]]", "[105,100,58,1,2]"),
];

#[tokio::test]
async fn greeter_functions_compute_exact_answers() {
    let host = HostProcess::start(&["greeter"]);
    let client = host.client().await;
    for (function, arguments, expected) in GREETER_ANSWERS {
        let name = format!("greeter.{function}");
        let value = client.call_value(&name, args(arguments)).await.unwrap();
        assert_eq!(json(&value), *expected, "{name}({arguments})");
    }
}

/// (function, arguments as JSON, the exact `invalid_args` message)
const INVALID: &[(&str, &str, &str)] = &[
    (
        "math.add",
        "[1]",
        "`math.add` takes 2 arguments (a: s64, b: s64), got 1",
    ),
    (
        "math.add",
        "[1, 2, 3]",
        "`math.add` takes 2 arguments (a: s64, b: s64), got 3",
    ),
    (
        "math.add",
        "[1, \"2\"]",
        "parameter `b`: expected an integer (s64), got text \"2\"",
    ),
    (
        "math.add",
        "[1.5, 2]",
        "parameter `a`: expected an integer (s64), got float 1.5",
    ),
    (
        "greeter.echo.echo-u8",
        "[256]",
        "parameter `v`: 256 is out of range for u8",
    ),
    (
        "greeter.echo.echo-s8",
        "[-129]",
        "parameter `v`: -129 is out of range for s8",
    ),
    (
        "greeter.echo.echo-u64",
        "[-1]",
        "parameter `v`: -1 is out of range for u64",
    ),
    (
        "greeter.echo.echo-f32",
        "[1e39]",
        "parameter `v`: 1e39 is out of range for f32",
    ),
    (
        "greeter.echo.echo-char",
        "[\"ab\"]",
        "parameter `v`: expected a char (text of exactly one character), got text of 2 characters",
    ),
    (
        "greeter.echo.echo-record",
        "[{\"name\": \"a\", \"age\": 300, \"nick-name\": null}]",
        "parameter `v`: at .age: 300 is out of range for u8",
    ),
    (
        "greeter.echo.echo-record",
        "[{\"name\": \"a\", \"age\": 3}]",
        "parameter `v`: missing field `nick-name`",
    ),
    (
        "greeter.echo.echo-record",
        "[{\"name\": \"a\", \"age\": 3, \"nick-name\": null, \"shoe\": 9}]",
        "parameter `v`: unknown field `shoe`",
    ),
    (
        "greeter.echo.echo-list-of-records",
        "[[{\"name\": \"a\", \"age\": 1, \"nick-name\": null}, {\"name\": 2, \"age\": 1, \"nick-name\": null}]]",
        "parameter `v`: at [1].name: expected text, got integer 2",
    ),
    (
        "greeter.echo.echo-enum",
        "[\"purple\"]",
        "parameter `v`: unknown case `purple`; expected one of red, green, blue",
    ),
    (
        "greeter.echo.echo-flags",
        "[[\"read\", \"fly\"]]",
        "parameter `v`: unknown flag `fly`; expected some of read, write, exec",
    ),
    (
        "greeter.echo.echo-variant",
        "[{\"square\": 1}]",
        "parameter `v`: unknown case `square`",
    ),
    (
        "greeter.echo.echo-variant",
        "[{\"count\": 1, \"text\": \"x\"}]",
        "parameter `v`: expected a map with exactly one key (variant), got 2 keys",
    ),
    (
        "greeter.echo.echo-variant",
        "[{\"none\": 5}]",
        "parameter `v`: at .none: expected null (this case has no payload), got integer 5",
    ),
    (
        "greeter.echo.echo-tuple",
        "[[1, \"x\"]]",
        "parameter `v`: expected a tuple of 3 elements, got 2",
    ),
    (
        "greeter.echo.echo-nested-option",
        "[5]",
        "parameter `v`: expected null or an array of one element (some of an option), got integer 5",
    ),
    (
        "greeter.echo.echo-result",
        "[{\"maybe\": 1}]",
        "parameter `v`: expected key `ok` or `err`, got `maybe`",
    ),
    (
        "greeter.echo.echo-bytes",
        "[[1, 256]]",
        "parameter `v`: at [1]: 256 is out of range for u8",
    ),
    (
        "greeter.echo.echo-bool",
        "[1]",
        "parameter `v`: expected bool, got integer 1",
    ),
    // Functions that pass byte strings take the typed path (see
    // `byte_strings_are_copied_whole`): same checks, same messages.
    (
        "greeter.frame",
        "[\"id\"]",
        "`greeter.frame` takes 2 arguments (label: string, body: list<u8>), got 1",
    ),
    (
        "greeter.frame",
        "[5, [1]]",
        "parameter `label`: expected text, got integer 5",
    ),
    (
        "greeter.frame",
        "[\"id\", \"body\"]",
        "parameter `body`: expected bytes or an array, got text \"body\"",
    ),
    (
        "greeter.frame",
        "[\"id\", [1, -1]]",
        "parameter `body`: at [1]: -1 is out of range for u8",
    ),
    (
        "misbehave.big",
        "[4294967296]",
        "parameter `len`: 4294967296 is out of range for u32",
    ),
];

#[tokio::test]
async fn invalid_arguments_are_refused_naming_the_parameter() {
    let host = HostProcess::start(&["math", "greeter", "misbehave"]);
    let client = host.client().await;
    for (function, arguments, message) in INVALID {
        assert_call_error(
            client.call_value(function, args(arguments)).await,
            ErrorCode::InvalidArgs,
            Processed::No,
            message,
        );
    }
    // The host keeps serving after all of them.
    assert_eq!(
        client.call_value("math.add", args("[2, 3]")).await.unwrap(),
        Value::from(5)
    );
}

/// A CBOR bignum: tag 2 (positive) or 3 (negative, −1 − n) over the
/// big-endian magnitude n.
fn bignum(tag: u64, magnitude: &[u8]) -> Value {
    Value::Tag(tag, Box::new(Value::Bytes(magnitude.to_vec())))
}

#[tokio::test]
async fn bignums_are_integers_and_out_of_range_ones_say_so() {
    let host = HostProcess::start(&["math", "greeter"]);
    let client = host.client().await;
    let two_to_64 = [1, 0, 0, 0, 0, 0, 0, 0, 0];
    // Within range (leading zero bytes make the decoder keep the tag).
    let mut padded = vec![0; 20];
    padded.push(7);
    let sum = client
        .call_value("math.add", vec![bignum(2, &padded), bignum(3, &[1])])
        .await;
    assert_eq!(sum.unwrap(), Value::from(5));
    for (function, arg, message) in [
        (
            "greeter.echo.echo-u64",
            bignum(2, &two_to_64),
            "parameter `v`: 18446744073709551616 is out of range for u64",
        ),
        (
            "greeter.echo.echo-s64",
            bignum(3, &two_to_64),
            "parameter `v`: -18446744073709551617 is out of range for s64",
        ),
        (
            "greeter.echo.echo-u8",
            bignum(2, &[0xff; 16]),
            "parameter `v`: 340282366920938463463374607431768211455 is out of range for u8",
        ),
        (
            "greeter.echo.echo-u64",
            bignum(2, &[1; 40]),
            "parameter `v`: a bignum of 40 bytes is out of range for u64",
        ),
    ] {
        assert_call_error(
            client.call_value(function, vec![arg]).await,
            ErrorCode::InvalidArgs,
            Processed::No,
            message,
        );
    }
    // The one bignum the decoder itself refuses (PROTOCOL.md §3): a
    // negative one over 16 bytes below -2^127 makes the frame malformed.
    let mut conn = wasmrpc_tests::RawConn::handshake(host.addr);
    let mut frame =
        b"\xa1\x64call\xa3\x62id\x01\x68function\x75greeter.echo.echo-s64\x64args\x81\xc3\x50"
            .to_vec();
    frame.extend_from_slice(&[0xff; 16]);
    let mut framed = (frame.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&frame);
    conn.send(&framed);
    match conn
        .read_until_closed(std::time::Duration::from_secs(5))
        .as_slice()
    {
        [wasmrpc::protocol::Message::Error(error)] => {
            assert_eq!(error.id, None);
            assert_eq!(error.code, ErrorCode::ProtocolError);
            assert_eq!(error.message, "malformed frame: integer too large");
        }
        other => panic!("expected a connection-level error, got {other:?}"),
    }
    assert_eq!(
        client.call_value("math.add", args("[2, 3]")).await.unwrap(),
        Value::from(5)
    );
}
