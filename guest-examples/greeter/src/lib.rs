//! The `greeter` plugin: enums, flags, variants, options, chars and tuples at
//! the world level, and an `echo` interface covering every WIT type family.

use std::f64::consts::PI;

use exports::example::greeter::echo::{self, Color, Payload, Perms, Person};

wit_bindgen::generate!({ path: ["../../wit", "wit"], world: "example:greeter/greeter" });

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String, title: Option<String>, lang: Language) -> String {
        let hello = match lang {
            Language::English => "Hello",
            Language::French => "Bonjour",
            Language::Spanish => "Hola",
        };
        match title {
            Some(title) => format!("{hello}, {title} {name}!"),
            None => format!("{hello}, {name}!"),
        }
    }

    fn decorate(text: String, style: Style) -> String {
        let mut text = text;
        if style.contains(Style::SHOUT) {
            text = text.to_uppercase();
        }
        if style.contains(Style::BOLD) {
            text = format!("**{text}**");
        }
        if style.contains(Style::ITALIC) {
            text = format!("_{text}_");
        }
        text
    }

    fn area(shape: Shape) -> f64 {
        match shape {
            Shape::Circle(r) => PI * r * r,
            Shape::Rectangle((w, h)) => w * h,
            Shape::Point => 0.0,
        }
    }

    fn initial(name: String) -> Option<char> {
        name.chars().next()
    }

    fn checksum(data: Vec<u8>) -> (u32, Vec<u8>) {
        let sum = data.iter().map(|&b| u32::from(b)).sum();
        let mut reversed = data;
        reversed.reverse();
        (sum, reversed)
    }

    fn frame(label: String, body: Vec<u8>) -> Result<Vec<u8>, String> {
        if body.is_empty() {
            return Err(format!("nothing to frame under `{label}`"));
        }
        let mut framed = label.into_bytes();
        framed.push(b':');
        framed.extend_from_slice(&body);
        Ok(framed)
    }
}

impl echo::Guest for Greeter {
    fn echo_bool(v: bool) -> bool {
        v
    }
    fn echo_s8(v: i8) -> i8 {
        v
    }
    fn echo_u8(v: u8) -> u8 {
        v
    }
    fn echo_s16(v: i16) -> i16 {
        v
    }
    fn echo_u16(v: u16) -> u16 {
        v
    }
    fn echo_s32(v: i32) -> i32 {
        v
    }
    fn echo_u32(v: u32) -> u32 {
        v
    }
    fn echo_s64(v: i64) -> i64 {
        v
    }
    fn echo_u64(v: u64) -> u64 {
        v
    }
    fn echo_f32(v: f32) -> f32 {
        v
    }
    fn echo_f64(v: f64) -> f64 {
        v
    }
    fn echo_char(v: char) -> char {
        v
    }
    fn echo_string(v: String) -> String {
        v
    }
    fn echo_bytes(v: Vec<u8>) -> Vec<u8> {
        v
    }
    fn echo_list(v: Vec<String>) -> Vec<String> {
        v
    }
    fn echo_tuple(v: (u8, String, bool)) -> (u8, String, bool) {
        v
    }
    fn echo_record(v: Person) -> Person {
        v
    }
    fn echo_variant(v: Payload) -> Payload {
        v
    }
    fn echo_enum(v: Color) -> Color {
        v
    }
    fn echo_option(v: Option<String>) -> Option<String> {
        v
    }
    fn echo_nested_option(v: Option<Option<u32>>) -> Option<Option<u32>> {
        v
    }
    fn echo_result(v: Result<String, u32>) -> Result<String, u32> {
        v
    }
    fn echo_unit_result(v: Result<(), ()>) -> Result<(), ()> {
        v
    }
    fn echo_flags(v: Perms) -> Perms {
        v
    }
    fn echo_list_of_records(v: Vec<Person>) -> Vec<Person> {
        v
    }
}

export!(Greeter);
