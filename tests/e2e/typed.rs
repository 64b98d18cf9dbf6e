//! Typed calls: serde types in and out through the real client and a real
//! host, for every WIT type family of the greeter plugin and for the
//! errors of `greeter.frame` and `inventory.stock.reserve`.

use std::collections::BTreeSet;
use std::fmt::Debug;

use ciborium::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasmrpc::{ErrorCode, Processed};
use wasmrpc_client::Client;
use wasmrpc_client::typed::{from_value, to_args};
use wasmrpc_tests::{HostProcess, assert_call_error, cbor};

/// `greeter.echo.echo-<family>(value)` answers `value` itself.
async fn echo<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    client: &Client,
    family: &str,
    value: T,
) {
    let function = format!("greeter.echo.echo-{family}");
    let answer: T = client
        .call(&function, (&value,))
        .await
        .unwrap_or_else(|e| panic!("{function}({value:?}) failed: {e}"));
    assert_eq!(answer, value, "{function}");
}

/// `record person { name: string, age: u8, nick-name: option<string> }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Person {
    name: String,
    age: u8,
    nick_name: Option<String>,
}

fn person(name: &str, age: u8, nick_name: Option<&str>) -> Person {
    Person {
        name: name.into(),
        age,
        nick_name: nick_name.map(Into::into),
    }
}

/// `variant payload { none, count(u32), text(string), pair(tuple<s8, u16>) }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Payload {
    None,
    Count(u32),
    Text(String),
    Pair(i8, u16),
}

/// `enum color { red, green, blue }`
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Color {
    Red,
    Green,
    Blue,
}

/// `flags perms { read, write, exec }`, declared in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Perm {
    Read,
    Write,
    Exec,
}

/// `enum language { english, french, spanish }`
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Language {
    English,
    French,
    Spanish,
}

/// `flags style { bold, italic, shout }`
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Style {
    Bold,
    Italic,
    Shout,
}

/// `variant shape { circle(f64), rectangle(tuple<f64, f64>), point }`
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Shape {
    Circle(f64),
    Rectangle(f64, f64),
    Point,
}

/// `inventory.stock.reserve`'s record.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Reservation {
    sku: String,
    quantity: u32,
    warehouse: String,
    reservation_id: String,
}

/// `inventory.stock.reserve`'s error variant.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum StockError {
    UnknownSku(String),
    Insufficient(u32),
    InvalidQuantity,
}

#[tokio::test]
async fn every_wit_type_family_round_trips_as_serde_types() {
    let host = HostProcess::start(&["greeter"]);
    let client = host.client().await;
    echo(&client, "bool", true).await;
    echo(&client, "bool", false).await;
    echo(&client, "s8", i8::MIN).await;
    echo(&client, "s8", i8::MAX).await;
    echo(&client, "u8", u8::MIN).await;
    echo(&client, "u8", u8::MAX).await;
    echo(&client, "s16", i16::MIN).await;
    echo(&client, "s16", i16::MAX).await;
    echo(&client, "u16", u16::MAX).await;
    echo(&client, "s32", i32::MIN).await;
    echo(&client, "s32", i32::MAX).await;
    echo(&client, "u32", u32::MAX).await;
    echo(&client, "s64", i64::MIN).await;
    echo(&client, "s64", i64::MAX).await;
    echo(&client, "u64", u64::MIN).await;
    echo(&client, "u64", u64::MAX).await;
    echo(&client, "f32", 1.5f32).await;
    echo(&client, "f32", -0.25f32).await;
    echo(&client, "f32", f32::MAX).await;
    echo(&client, "f32", f32::NEG_INFINITY).await;
    echo(&client, "f64", 0.1f64).await;
    echo(&client, "f64", -1e300f64).await;
    echo(&client, "f64", f64::MIN_POSITIVE).await;
    echo(&client, "char", 'é').await;
    echo(&client, "char", '🦀').await;
    echo(&client, "string", String::new()).await;
    echo(&client, "string", "grüße, 世界".to_owned()).await;
    echo(&client, "bytes", vec![0u8, 1, 254, 255]).await;
    echo(&client, "bytes", Vec::<u8>::new()).await;
    let kibibytes: Vec<u8> = (0..10_000).map(|i| (i % 251) as u8).collect();
    echo(&client, "bytes", kibibytes).await;
    echo(
        &client,
        "list",
        vec!["a".to_owned(), "b".into(), String::new()],
    )
    .await;
    echo(&client, "list", Vec::<String>::new()).await;
    echo(&client, "tuple", (7u8, "seven".to_owned(), true)).await;
    echo(&client, "record", person("Ada", 36, Some("countess"))).await;
    echo(&client, "record", person("", 0, None)).await;
    echo(
        &client,
        "list-of-records",
        vec![person("a", 1, None), person("b", 2, Some("bee"))],
    )
    .await;
    echo(&client, "list-of-records", Vec::<Person>::new()).await;
    for payload in [
        Payload::None,
        Payload::Count(42),
        Payload::Count(u32::MAX),
        Payload::Text("hi".into()),
        Payload::Pair(-1, 65535),
        Payload::Pair(i8::MIN, 0),
    ] {
        echo(&client, "variant", payload).await;
    }
    for color in [Color::Red, Color::Green, Color::Blue] {
        echo(&client, "enum", color).await;
    }
    echo(&client, "option", None::<String>).await;
    echo(&client, "option", Some("x".to_owned())).await;
    echo(&client, "option", Some(String::new())).await;
    echo(&client, "nested-option", None::<Option<u32>>).await;
    echo(&client, "nested-option", Some(None::<u32>)).await;
    echo(&client, "nested-option", Some(Some(5u32))).await;
    echo(&client, "nested-option", Some(Some(u32::MAX))).await;
    echo(&client, "flags", BTreeSet::<Perm>::new()).await;
    echo(&client, "flags", BTreeSet::from([Perm::Read, Perm::Exec])).await;
    echo(
        &client,
        "flags",
        BTreeSet::from([Perm::Read, Perm::Write, Perm::Exec]),
    )
    .await;
}

/// Where the host's answer is not the argument's own form (a variant case
/// answered as a map, flags in declaration order, floats rounded to f32,
/// byte lists as byte strings), the typed answer is the value it stands for.
#[tokio::test]
async fn host_normalized_answers_read_back_as_the_values_they_stand_for() {
    let host = HostProcess::start(&["greeter"]);
    let client = host.client().await;

    // A unit case goes as bare text, comes back as `{"none": null}`.
    let args = to_args(&(Payload::None,)).unwrap();
    assert_eq!(args, vec![Value::Text("none".into())]);
    let raw = client
        .call_value("greeter.echo.echo-variant", args.clone())
        .await
        .unwrap();
    assert_eq!(raw, cbor("{\"none\": null}"));
    assert_eq!(from_value::<Payload>(raw).unwrap(), Payload::None);

    // Flags in any order come back in declaration order.
    let flags: Vec<Perm> = client
        .call(
            "greeter.echo.echo-flags",
            (vec![Perm::Exec, Perm::Read, Perm::Exec],),
        )
        .await
        .unwrap();
    assert_eq!(flags, vec![Perm::Read, Perm::Exec]);

    // f32 rounds: 0.1 as f64 comes back as the nearest f32, and an
    // integer argument comes back as a float.
    let rounded: f64 = client
        .call("greeter.echo.echo-f32", (0.1f64,))
        .await
        .unwrap();
    assert_eq!(rounded, 0.10000000149011612);
    let rounded: f32 = client
        .call("greeter.echo.echo-f32", (0.1f64,))
        .await
        .unwrap();
    assert_eq!(rounded, 0.1f32);
    let rounded: f64 = client
        .call("greeter.echo.echo-f32", (16777217u32,))
        .await
        .unwrap();
    assert_eq!(rounded, 16777216.0);
    let whole: f64 = client.call("greeter.echo.echo-f64", (3i64,)).await.unwrap();
    assert_eq!(whole, 3.0);

    // A list<u8> goes as a byte string and comes back as one; an array of
    // wider integers is accepted too, and reads back into a Vec<u8>.
    let args = to_args(&(vec![9u8, 8, 7],)).unwrap();
    assert_eq!(args, vec![Value::Bytes(vec![9, 8, 7])]);
    let raw = client
        .call_value("greeter.echo.echo-bytes", args)
        .await
        .unwrap();
    assert_eq!(raw, Value::Bytes(vec![9, 8, 7]));
    let bytes: Vec<u8> = client
        .call("greeter.echo.echo-bytes", (vec![1u16, 255],))
        .await
        .unwrap();
    assert_eq!(bytes, vec![1, 255]);

    // Nested options: the wire form of some(none) and some(some(5)).
    for (option, wire) in [
        (None, "null"),
        (Some(None), "[null]"),
        (Some(Some(5u32)), "[5]"),
    ] {
        let args = to_args(&(option,)).unwrap();
        assert_eq!(args, vec![cbor(wire)], "{option:?}");
        let raw = client
            .call_value("greeter.echo.echo-nested-option", args)
            .await
            .unwrap();
        assert_eq!(raw, cbor(wire), "{option:?}");
        assert_eq!(from_value::<Option<Option<u32>>>(raw).unwrap(), option);
    }

    // Untyped values pass through the typed path unchanged.
    let raw: Value = client
        .call(
            "greeter.echo.echo-record",
            vec![cbor(
                "{\"name\": \"Ada\", \"age\": 36, \"nick-name\": null}",
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        raw,
        cbor("{\"name\": \"Ada\", \"age\": 36, \"nick-name\": null}")
    );
}

/// A `result` parameter travels as `{"ok": v}` / `{"err": e}`; the
/// function's top-level result comes back as `ok`'s value, or as a
/// `handler_error` whose detail is the error value.
#[tokio::test]
async fn results_go_as_ok_or_err_and_errors_decode_from_the_detail() {
    let host = HostProcess::start(&["greeter"]);
    let client = host.client().await;
    let fine: String = client
        .call("greeter.echo.echo-result", (Ok::<_, u32>("fine"),))
        .await
        .unwrap();
    assert_eq!(fine, "fine");

    let err = assert_call_error(
        client
            .call::<_, String>("greeter.echo.echo-result", (Err::<String, _>(7u32),))
            .await,
        ErrorCode::HandlerError,
        Processed::Yes,
        "7",
    );
    assert_eq!(from_value::<u32>(err.detail.unwrap()).unwrap(), 7);

    let () = client
        .call("greeter.echo.echo-unit-result", (Ok::<(), ()>(()),))
        .await
        .unwrap();
    let err = assert_call_error(
        client
            .call::<_, ()>("greeter.echo.echo-unit-result", (Err::<(), ()>(()),))
            .await,
        ErrorCode::HandlerError,
        Processed::Yes,
        "`greeter.echo.echo-unit-result` returned an error",
    );
    assert_eq!(err.detail, None);
}

#[tokio::test]
async fn greeter_functions_take_and_answer_serde_types() {
    let host = HostProcess::start(&["greeter"]);
    let client = host.client().await;
    for (title, lang, expected) in [
        (Some("Dr."), Language::English, "Hello, Dr. Ada!"),
        (None, Language::French, "Bonjour, Ada!"),
        (None, Language::Spanish, "Hola, Ada!"),
    ] {
        let greeting: String = client
            .call("greeter.greet", ("Ada", title, lang))
            .await
            .unwrap();
        assert_eq!(greeting, expected);
    }

    let all = BTreeSet::from([Style::Shout, Style::Italic, Style::Bold]);
    let decorated: String = client.call("greeter.decorate", ("hi", all)).await.unwrap();
    assert_eq!(decorated, "_**HI**_");
    let plain: String = client
        .call("greeter.decorate", ("hi", BTreeSet::<Style>::new()))
        .await
        .unwrap();
    assert_eq!(plain, "hi");

    for (shape, expected) in [
        (Shape::Rectangle(2.0, 3.5), 7.0),
        (Shape::Point, 0.0),
        (Shape::Circle(1.0), std::f64::consts::PI),
    ] {
        let area: f64 = client.call("greeter.area", (&shape,)).await.unwrap();
        assert_eq!(area, expected, "{shape:?}");
    }

    let initial: Option<char> = client.call("greeter.initial", ("Zoë",)).await.unwrap();
    assert_eq!(initial, Some('Z'));
    let initial: Option<char> = client.call("greeter.initial", ("",)).await.unwrap();
    assert_eq!(initial, None);

    let (sum, reversed): (u32, Vec<u8>) = client
        .call("greeter.checksum", (vec![1u8, 2, 250],))
        .await
        .unwrap();
    assert_eq!((sum, reversed), (253, vec![250, 2, 1]));

    let framed: Vec<u8> = client
        .call("greeter.frame", ("né", vec![0u8, 255]))
        .await
        .unwrap();
    assert_eq!(framed, vec![b'n', 0xc3, 0xa9, b':', 0, 255]);
    let err = assert_call_error(
        client
            .call::<_, Vec<u8>>("greeter.frame", ("x", Vec::<u8>::new()))
            .await,
        ErrorCode::HandlerError,
        Processed::Yes,
        "nothing to frame under `x`",
    );
    assert_eq!(
        from_value::<String>(err.detail.unwrap()).unwrap(),
        "nothing to frame under `x`"
    );
}

#[tokio::test]
async fn reserve_answers_a_record_and_its_errors_decode_into_a_rust_enum() {
    let host = HostProcess::start(&["inventory"]);
    let client = host.client().await;
    let reservation: Reservation = client
        .call("inventory.stock.reserve", ("sku-1", 2u32))
        .await
        .unwrap();
    assert_eq!(
        reservation,
        Reservation {
            sku: "sku-1".into(),
            quantity: 2,
            warehouse: "lisbon".into(),
            reservation_id: "R-sku-1-2".into(),
        }
    );
    for (sku, qty, message, expected) in [
        (
            "sku-2",
            5u32,
            "{\"insufficient\":3}",
            StockError::Insufficient(3),
        ),
        (
            "sku-1",
            0,
            "{\"invalid-quantity\":null}",
            StockError::InvalidQuantity,
        ),
        (
            "nope",
            1,
            "{\"unknown-sku\":\"nope\"}",
            StockError::UnknownSku("nope".into()),
        ),
    ] {
        let err = assert_call_error(
            client
                .call::<_, Reservation>("inventory.stock.reserve", (sku, qty))
                .await,
            ErrorCode::HandlerError,
            Processed::Yes,
            message,
        );
        assert_eq!(
            from_value::<StockError>(err.detail.unwrap()).unwrap(),
            expected
        );
    }
}

/// Typed values of the wrong shape: the host refuses arguments that forget
/// kebab-case, and answers that do not fit the Rust type fail with the
/// path inside the answer.
#[tokio::test]
async fn mismatched_types_fail_naming_where() {
    let host = HostProcess::start(&["greeter"]);
    let client = host.client().await;

    /// The record without `rename_all = "kebab-case"`.
    #[derive(Debug, Serialize)]
    struct SnakePerson {
        name: String,
        age: u8,
        nick_name: Option<String>,
    }
    let snake = SnakePerson {
        name: "Ada".into(),
        age: 36,
        nick_name: None,
    };
    assert_call_error(
        client
            .call::<_, Person>("greeter.echo.echo-record", (snake,))
            .await,
        ErrorCode::InvalidArgs,
        Processed::No,
        "parameter `v`: unknown field `nick_name`",
    );

    /// A narrower Rust type for the answer: `age` as i8.
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    #[allow(dead_code)]
    struct Narrow {
        name: String,
        age: i8,
        nick_name: Option<String>,
    }
    let people = vec![person("a", 1, None), person("b", 200, Some("bee"))];
    let raw = client
        .call(
            "greeter.echo.echo-list-of-records",
            to_args(&(people,)).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        from_value::<Vec<Narrow>>(raw).unwrap_err().to_string(),
        "at [1].age: 200 is out of range for i8"
    );
    let raw = client
        .call_value("greeter.echo.echo-u16", to_args(&(65535u16,)).unwrap())
        .await
        .unwrap();
    assert_eq!(
        from_value::<u8>(raw).unwrap_err().to_string(),
        "65535 is out of range for u8"
    );

    // Through `Client::call`: an answer that does not fit is `internal`
    // (the function ran)...
    assert_call_error(
        client
            .call::<_, u8>("greeter.echo.echo-u16", (65535u16,))
            .await,
        ErrorCode::Internal,
        Processed::Yes,
        "the answer of `greeter.echo.echo-u16` does not fit the type asked for: \
         65535 is out of range for u8",
    );
    // ...and arguments that are not a sequence are refused before sending.
    assert_call_error(
        client.call::<_, u16>("greeter.echo.echo-u16", 5u16).await,
        ErrorCode::InvalidArgs,
        Processed::No,
        "cannot encode the arguments of `greeter.echo.echo-u16`: \
         the arguments must be a sequence (a tuple, a Vec or `()`), got integer 5",
    );
}
