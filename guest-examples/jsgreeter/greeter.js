// The `jsgreeter` plugin: the `polyglot` world written in JavaScript.
//
// It answers everything the Rust `greeter` answers, with the same values, and
// shows what a JavaScript handler can do through the host: log, learn its
// region and call another plugin (`visit`).
//
// componentize-js turns this ES module into a WebAssembly component: its
// exported functions are the world's own exports (served as
// `jsgreeter.greet`, `jsgreeter.add`, ...) and the exported object `echo` is
// the `echo` interface (served as `jsgreeter.echo.echo-record`, ...). Build
// it with `cargo xtask plugins`, or by hand from this folder:
//
//     npm ci
//     npx componentize-js --wit <the staged WIT> --world-name polyglot \
//         -d http fetch-event -o jsgreeter.wasm greeter.js
//
// WIT types arrive as plain JavaScript values, their names in camelCase:
// numbers (bigint for s64 and u64), strings (a char is a one-character
// string), `Uint8Array` for `list<u8>`, arrays for other lists and for
// tuples, `undefined` for an empty `option`, objects for records, strings
// for enums, objects of booleans for flags and `{ tag, val }` for variants.
// A function returning a `result` returns its ok value, or `{ tag: 'err',
// val }` for its error (`{ tag: 'ok', val }` works too); an exception it
// throws traps the call.
//
// componentize-js 0.23 gets 64-bit signed integers and large u32 results
// wrong where they are a function's whole argument or result (inside a
// record, list, tuple, option or result they are exact): a negative s64
// argument arrives as its unsigned bit pattern (-1 as 18446744073709551615n),
// a negative s64 result traps the call, and a u32 result of 2^31 or more
// reaches the caller changed. So `add` answers only sums of 0 or more, and
// `echo.echoS64` and `echo.echoU32` echo only such numbers.

import { call, log, region } from 'wasmrpc:host/host@0.2.0';

const GREETINGS = { english: 'Hello', french: 'Bonjour', spanish: 'Hola' };

export function greet(name, title, lang) {
  const hello = GREETINGS[lang];
  return title === undefined ? `${hello}, ${name}!` : `${hello}, ${title} ${name}!`;
}

export function decorate(text, style) {
  if (style.shout) text = text.toUpperCase();
  if (style.bold) text = `**${text}**`;
  if (style.italic) text = `_${text}_`;
  return text;
}

export function area(shape) {
  switch (shape.tag) {
    case 'circle':
      return Math.PI * shape.val * shape.val;
    case 'rectangle': {
      const [width, height] = shape.val;
      return width * height;
    }
    default:
      return 0;
  }
}

export function initial(name) {
  // A whole character, as a WIT `char` is: `name[0]` would be half of 🦀.
  return name === '' ? undefined : String.fromCodePoint(name.codePointAt(0));
}

export function checksum(data) {
  const sum = data.reduce((total, byte) => total + byte, 0);
  return [sum, data.slice().reverse()];
}

export function frame(label, body) {
  if (body.length === 0) return { tag: 'err', val: `nothing to frame under \`${label}\`` };
  const prefix = new TextEncoder().encode(`${label}:`);
  const framed = new Uint8Array(prefix.length + body.length);
  framed.set(prefix);
  framed.set(body, prefix.length);
  return framed;
}

export function add(a, b) {
  // bigints never overflow: wrap into s64 by hand, as Rust's `wrapping_add`
  // does. Wrapping also undoes the unsigned bit pattern a negative argument
  // arrives as.
  return BigInt.asIntN(64, a + b);
}

export function language() {
  return 'javascript';
}

export function visit(name) {
  log('info', `visiting ${name}`);
  const here = region();
  // Arguments go as a CBOR array in parameter order: name, title, lang.
  let reply;
  try {
    reply = call('greeter.greet', encodeCbor([name, null, 'english']));
  } catch (failed) {
    // An imported function's error is thrown: its `call-error` is the
    // `payload` of the exception.
    const { code, message } = failed.payload;
    return { tag: 'err', val: `${code}: ${message}` };
  }
  return { region: here, greeting: decodeCborText(reply), language: language() };
}

export function check(n) {
  // The `problem` reaches the caller as the detail of a `handler_error`.
  if (n < 0) return { tag: 'err', val: { code: 400, reason: `${n} is negative` } };
  if (n % 2 !== 0) return { tag: 'err', val: { code: 422, reason: `${n} is odd` } };
  return n / 2;
}

export function crash(message) {
  // Not caught anywhere: the call ends with a trap.
  throw new Error(message);
}

export function spin() {
  // The host interrupts the loop at the call's deadline.
  for (;;) {}
}

export function hog(mib) {
  // One MiB at a time, all kept: a huge `mib` then runs into the plugin's
  // memory limit rather than into the longest array JavaScript allows.
  const kept = [];
  for (let i = 0; i < mib; i++) {
    const block = new Uint8Array(1024 * 1024);
    // Touch every 64 KiB WebAssembly page, so all of it is really used.
    for (let page = 0; page < block.length; page += 65536) block[page] = 1;
    kept.push(block);
  }
  return mib;
}

// Identity functions: each returns its argument unchanged.
const same = (v) => v;

export const echo = {
  echoBool: same,
  echoS8: same,
  echoU8: same,
  echoS16: same,
  echoU16: same,
  echoS32: same,
  echoU32: same,
  echoS64: same,
  echoU64: same,
  echoF32: same,
  echoF64: same,
  echoChar: same,
  echoString: same,
  echoBytes: same,
  echoList: same,
  echoTuple: same,
  echoRecord: same,
  echoVariant: same,
  echoEnum: same,
  echoOption: same,
  echoNestedOption: same,
  // A `result` argument arrives as `{ tag: 'ok' | 'err', val }`, which is
  // also a way to return one.
  echoResult: same,
  echoUnitResult: same,
  echoFlags: same,
  echoListOfRecords: same,
};

// The little CBOR `visit` needs: an array of text strings and nulls to send,
// a text string to read back.

function encodeCbor(items) {
  const bytes = cborHead(4, items.length);
  for (const item of items) {
    if (item === null) {
      bytes.push(0xf6);
    } else {
      const text = new TextEncoder().encode(item);
      bytes.push(...cborHead(3, text.length), ...text);
    }
  }
  return new Uint8Array(bytes);
}

// The head of a CBOR item: its major type and a length or value.
function cborHead(major, n) {
  const type = major << 5;
  if (n < 24) return [type | n];
  if (n < 0x100) return [type | 24, n];
  if (n < 0x10000) return [type | 25, n >> 8, n & 0xff];
  return [type | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

function decodeCborText(bytes) {
  const major = bytes[0] >> 5;
  const info = bytes[0] & 0x1f;
  if (major !== 3 || info > 27) throw new Error(`expected a CBOR text string, got byte ${bytes[0]}`);
  let length = info;
  let start = 1;
  if (info >= 24) {
    const size = 1 << (info - 24);
    length = 0;
    for (let i = 1; i <= size; i++) length = length * 256 + bytes[i];
    start = 1 + size;
  }
  return new TextDecoder().decode(bytes.subarray(start, start + length));
}
