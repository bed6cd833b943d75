//! RESP2: parsing requests (arrays of bulk strings, and inline commands) exactly as redis 7 does,
//! and writing replies.

/// A reply value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(&'static str),
    /// `-ERR ...` (the text after the dash; CR and LF are written as spaces, as redis does).
    Error(Vec<u8>),
    /// `:42`
    Int(i64),
    /// `$3 foo`, or `$-1` for `None`.
    Bulk(Option<Vec<u8>>),
    /// `*N ...`
    Array(Vec<Resp>),
}

impl Resp {
    /// `-ERR <msg>`.
    pub fn err(msg: impl AsRef<[u8]>) -> Self {
        let msg = msg.as_ref();
        let mut text = Vec::with_capacity(4 + msg.len());
        text.extend_from_slice(b"ERR ");
        text.extend_from_slice(msg);
        Resp::Error(text)
    }

    /// Appends the wire form of `self` to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Resp::Simple(s) => {
                out.push(b'+');
                out.extend_from_slice(s.as_bytes());
            }
            Resp::Error(e) => {
                out.push(b'-');
                // A CR or LF inside the text would end the reply early and let the rest read as
                // another reply: as redis does, those at either end are trimmed and the others
                // written as spaces.
                let is_break = |b: &u8| matches!(b, b'\r' | b'\n');
                let start = e.iter().position(|b| !is_break(b)).unwrap_or(e.len());
                let end = e
                    .iter()
                    .rposition(|b| !is_break(b))
                    .map_or(start, |i| i + 1);
                out.extend(e[start..end].iter().map(|&b| match b {
                    b'\r' | b'\n' => b' ',
                    b => b,
                }));
            }
            Resp::Int(i) => {
                out.push(b':');
                write_decimal(out, *i);
            }
            Resp::Bulk(None) => out.extend_from_slice(b"$-1"),
            Resp::Bulk(Some(b)) => {
                out.push(b'$');
                write_decimal(out, b.len() as i64);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(b);
            }
            Resp::Array(items) => {
                out.push(b'*');
                write_decimal(out, items.len() as i64);
                out.extend_from_slice(b"\r\n");
                for item in items {
                    item.write(out);
                }
                return;
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `n` in decimal, without the temporary `String` of `to_string` (one per reply).
fn write_decimal(out: &mut Vec<u8>, n: i64) {
    use std::io::Write;
    write!(out, "{n}").expect("writing to a Vec cannot fail");
}

/// Redis' `string2ll`: an optional `-`, then `0` or digits without a leading zero, in range
/// (no `+`, no spaces, at most 20 bytes).
pub fn string2ll(bytes: &[u8]) -> Option<i64> {
    // The common case, a short run of digits without a leading zero (every length header), is
    // folded by hand: no UTF-8 check, no `str::parse`.
    match bytes {
        [b'1'..=b'9', rest @ ..] if rest.len() < 18 && rest.iter().all(u8::is_ascii_digit) => {
            return Some(
                bytes
                    .iter()
                    .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0')),
            );
        }
        [b'0'] => return Some(0),
        _ => {}
    }
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = match digits {
        [] => false,
        [b'0'] => bytes.len() == 1,
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// What [`Parser::parse`] found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A command (never empty).
    Command(Vec<Vec<u8>>),
    /// More bytes are needed (what was consumed is kept by the parser).
    Incomplete,
    /// A protocol error: redis replies with this message and closes the connection.
    Error(Vec<u8>),
}

/// Largest inline request, and longest multibulk or bulk header line without its CR, redis
/// accepts (`PROTO_INLINE_MAX_SIZE`).
const MAX_INLINE: usize = 64 * 1024;
/// Largest multibulk length redis accepts (`INT_MAX`).
const MAX_MULTIBULK: i64 = i32::MAX as i64;
/// At most this many argument slots are reserved ahead of the arguments themselves.
const PREALLOC_ARGS: usize = 1024;

/// A resumable RESP2 request parser: the arguments of a multibulk command are copied out as
/// they complete and the parser remembers how far it got, so a large request arriving in many
/// reads is parsed once (linear in the bytes received), never re-read from its start. The bytes
/// of the command in progress stay in the caller's buffer until it completes (a connection can
/// hand them to another thread, where a fresh parser starts over).
#[derive(Debug)]
pub struct Parser {
    /// The multibulk command in progress: arguments still expected, those read so far, and how
    /// many of its bytes they span.
    pending: Option<Pending>,
    max_bulk: usize,
}

#[derive(Debug)]
struct Pending {
    left: usize,
    args: Vec<Vec<u8>>,
    parsed: usize,
}

impl Parser {
    /// A parser that refuses bulk strings longer than `max_bulk` bytes.
    pub fn new(max_bulk: usize) -> Self {
        Self {
            pending: None,
            max_bulk,
        }
    }

    /// The length of the bulk string the parser waits for in `buf` (which starts with the
    /// command in progress), if it has read that bulk's header: lets the caller reserve room.
    pub fn awaited_bulk(&self, buf: &[u8]) -> Option<usize> {
        let parsed = self.pending.as_ref()?.parsed;
        let (line, _) = line_to_cr(buf.get(parsed..)?)?;
        let len = string2ll(line.strip_prefix(b"$")?)?;
        usize::try_from(len).ok()
    }

    /// Parses the command at the front of `buf` (which starts where the previous complete
    /// command ended). Returns what it found and the bytes that command (or a blank line, or an
    /// empty multibulk, reported as `Incomplete`) took; 0 while it is incomplete.
    pub fn parse(&mut self, buf: &[u8]) -> (Parsed, usize) {
        if self.pending.is_none() {
            match buf.first() {
                None => return (Parsed::Incomplete, 0),
                Some(b'*') => {}
                Some(_) => return parse_inline(buf),
            }
            match multibulk_header(buf) {
                Header::Count(0, used) => return (Parsed::Incomplete, used),
                Header::Count(n, used) => {
                    self.pending = Some(Pending {
                        left: n,
                        args: Vec::with_capacity(n.min(PREALLOC_ARGS)),
                        parsed: used,
                    });
                }
                Header::Incomplete => return (Parsed::Incomplete, 0),
                Header::Error(e) => return (Parsed::Error(e), 0),
            }
        }
        self.parse_bulks(buf)
    }

    /// Reads the bulk strings of the command in progress, from where it stopped.
    fn parse_bulks(&mut self, buf: &[u8]) -> (Parsed, usize) {
        let Some(p) = self.pending.as_mut() else {
            return (Parsed::Incomplete, 0);
        };
        while p.left > 0 {
            let rest = &buf[p.parsed..];
            let Some((header, used)) = line_to_cr(rest) else {
                if rest.len() > MAX_INLINE {
                    return (protocol_error(b"too big bulk count string"), 0);
                }
                return (Parsed::Incomplete, 0);
            };
            // The line may be empty: the byte at its start is then the CR itself.
            if rest[0] != b'$' {
                let mut e = b"expected '$', got '".to_vec();
                e.push(rest[0]);
                e.push(b'\'');
                return (protocol_error(&e), 0);
            }
            let len = match string2ll(&header[1..]) {
                Some(n) if n >= 0 && (n as u64) <= self.max_bulk as u64 => n as usize,
                _ => return (protocol_error(b"invalid bulk length"), 0),
            };
            // Redis skips the two bytes after the bulk without looking at them.
            if used + len + 2 > rest.len() {
                return (Parsed::Incomplete, 0);
            }
            p.args.push(rest[used..used + len].to_vec());
            p.parsed += used + len + 2;
            p.left -= 1;
        }
        let done = self.pending.take().expect("a command is in progress");
        (Parsed::Command(done.args), done.parsed)
    }
}

/// A multibulk header: its argument count and length, or what stops it.
enum Header {
    Count(usize, usize),
    Incomplete,
    Error(Vec<u8>),
}

fn multibulk_header(buf: &[u8]) -> Header {
    let Some((line, used)) = line_to_cr(buf) else {
        if buf.len() > MAX_INLINE {
            return Header::Error(error_text(b"too big mbulk count string"));
        }
        return Header::Incomplete;
    };
    match string2ll(&line[1..]) {
        Some(n) if n > MAX_MULTIBULK => Header::Error(error_text(b"invalid multibulk length")),
        // An empty or negative count is no command at all.
        Some(n) if n <= 0 => Header::Count(0, used),
        Some(n) => Header::Count(n as usize, used),
        None => Header::Error(error_text(b"invalid multibulk length")),
    }
}

/// The line before the first CR of `buf` and the length through the byte after that CR, as redis
/// finds it: `strchr` for the CR (so a NUL byte before it hides it), the byte after the CR
/// required but not checked.
fn line_to_cr(buf: &[u8]) -> Option<(&[u8], usize)> {
    let cr = buf.iter().position(|&b| b == b'\r' || b == 0)?;
    (buf[cr] == b'\r' && cr + 2 <= buf.len()).then(|| (&buf[..cr], cr + 2))
}

fn error_text(msg: &[u8]) -> Vec<u8> {
    let mut e = b"ERR Protocol error: ".to_vec();
    e.extend_from_slice(msg);
    e
}

fn protocol_error(msg: &[u8]) -> Parsed {
    Parsed::Error(error_text(msg))
}

/// An inline command: one line, split by redis' `sdssplitargs` rules.
fn parse_inline(buf: &[u8]) -> (Parsed, usize) {
    // `strchr` for the LF: a NUL byte before it hides it.
    let Some(lf) = buf
        .iter()
        .position(|&b| b == b'\n' || b == 0)
        .filter(|&i| buf[i] == b'\n')
    else {
        if buf.len() > MAX_INLINE {
            return (protocol_error(b"too big inline request"), 0);
        }
        return (Parsed::Incomplete, 0);
    };
    let line = &buf[..lf];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match split_args(line) {
        None => (protocol_error(b"unbalanced quotes in request"), 0),
        Some(args) if args.is_empty() => (Parsed::Incomplete, lf + 1),
        Some(args) => (Parsed::Command(args), lf + 1),
    }
}

/// C's `isspace`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Redis' `sdssplitargs`: words separated by blanks; `"..."` with `\n \r \t \b \a \xHH` and
/// `\<any>` escapes; `'...'` with `\'` only; a closing quote must be followed by a blank or the
/// end. `None` for unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let (word, next) = split_word(line, p)?;
        args.push(word);
        p = next;
    }
}

/// One word of [`split_args`] starting at `p`; returns it and where the scan goes on.
fn split_word(line: &[u8], mut p: usize) -> Option<(Vec<u8>, usize)> {
    // The line is NUL-free (the LF search stops at a NUL), so 0 marks its end as in C.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut word = Vec::new();
    let mut quote = None;
    loop {
        let c = at(p);
        match quote {
            Some(b'"') => match c {
                b'\\' if at(p + 1) == b'x' => match (hex(at(p + 2)), hex(at(p + 3))) {
                    (Some(hi), Some(lo)) => {
                        word.push(hi * 16 + lo);
                        p += 3;
                    }
                    _ => {
                        p += 1;
                        word.push(b'x');
                    }
                },
                b'\\' if at(p + 1) != 0 => {
                    p += 1;
                    word.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                }
                b'"' => return closed(at(p + 1)).then_some((word, p + 1)),
                0 => return None,
                _ => word.push(c),
            },
            Some(_) => match c {
                b'\\' if at(p + 1) == b'\'' => {
                    p += 1;
                    word.push(b'\'');
                }
                b'\'' => return closed(at(p + 1)).then_some((word, p + 1)),
                0 => return None,
                _ => word.push(c),
            },
            None => match c {
                b' ' | b'\n' | b'\r' | b'\t' | 0 => return Some((word, p + usize::from(c != 0))),
                b'"' | b'\'' => quote = Some(c),
                _ => word.push(c),
            },
        }
        p += 1;
    }
}

/// A closing quote must be followed by a blank or the end of the line.
fn closed(next: u8) -> bool {
    next == 0 || is_space(next)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(buf: &[u8]) -> Vec<Parsed> {
        let mut parser = Parser::new(1024);
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let (parsed, used) = parser.parse(&buf[pos..]);
            pos += used;
            match parsed {
                Parsed::Incomplete if used == 0 => return out,
                Parsed::Incomplete => {}
                Parsed::Error(e) => {
                    out.push(Parsed::Error(e));
                    return out;
                }
                other => out.push(other),
            }
        }
    }

    fn words(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn parses_arrays_pipelines_and_partial_input_byte_by_byte() {
        let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        assert_eq!(
            parse_all(buf),
            [
                Parsed::Command(words(&["GET", "k"])),
                Parsed::Command(words(&["PING"]))
            ]
        );
        // Fed one byte at a time, the parser resumes where it stopped.
        let mut parser = Parser::new(1024);
        let (mut held, mut got) = (Vec::new(), Vec::new());
        for &b in buf {
            held.push(b);
            loop {
                let (parsed, used) = parser.parse(&held);
                held.drain(..used);
                match parsed {
                    Parsed::Command(args) => got.push(args),
                    Parsed::Incomplete if used == 0 => break,
                    Parsed::Incomplete => {}
                    Parsed::Error(e) => panic!("{e:?}"),
                }
            }
        }
        assert_eq!(got, [words(&["GET", "k"]), words(&["PING"])]);
    }

    #[test]
    fn numbers_are_as_strict_as_redis() {
        for bad in [&b"*+1\r\n"[..], b"*01\r\n", b"*x\r\n", b"*3000000000\r\n"] {
            assert_eq!(
                parse_all(bad),
                [Parsed::Error(
                    b"ERR Protocol error: invalid multibulk length".to_vec()
                )],
                "{bad:?}"
            );
        }
        for bad in [
            &b"*1\r\n$04\r\nPING\r\n"[..],
            b"*1\r\n$+4\r\nPING\r\n",
            b"*1\r\n$-1\r\n",
        ] {
            assert_eq!(
                parse_all(bad),
                [Parsed::Error(
                    b"ERR Protocol error: invalid bulk length".to_vec()
                )],
                "{bad:?}"
            );
        }
        // Up to INT_MAX arguments are accepted (and only as many as arrive are reserved).
        let mut parser = Parser::new(16);
        assert_eq!(
            parser.parse(b"*2000000000\r\n$1\r\na\r\n"),
            (Parsed::Incomplete, 0)
        );
        assert_eq!(parser.pending.as_ref().map(|p| p.parsed), Some(20));
        assert_eq!(parse_all(b"*0\r\n*-1\r\n"), []);
        assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(string2ll(b"-0"), None);
    }

    #[test]
    fn reports_redis_protocol_errors() {
        assert_eq!(
            parse_all(b"*1\r\n:3\r\n"),
            [Parsed::Error(
                b"ERR Protocol error: expected '$', got ':'".to_vec()
            )]
        );
        assert_eq!(
            parse_all(b"*1\r\n:3"),
            [],
            "the '$' is checked once the line is whole"
        );
        assert_eq!(
            parse_all(b"*1\r\n$9999\r\n"),
            [Parsed::Error(
                b"ERR Protocol error: invalid bulk length".to_vec()
            )]
        );
    }

    #[test]
    fn inline_commands_follow_sdssplitargs() {
        assert_eq!(
            parse_all(b"SET a  b\r\n"),
            [Parsed::Command(words(&["SET", "a", "b"]))]
        );
        assert_eq!(
            parse_all(b"SET \"a b\" 'c d'\n"),
            [Parsed::Command(words(&["SET", "a b", "c d"]))]
        );
        assert_eq!(
            split_args(br#"x"\x41\n\q" 'it\'s' a"b"c"#),
            None,
            "a closing quote followed by a letter"
        );
        assert_eq!(
            split_args(br#"x"\x41\n\q" 'it\'s'"#),
            Some(vec![b"xA\nq".to_vec(), b"it's".to_vec()])
        );
        assert_eq!(
            parse_all(b"SET \"a b\r\n"),
            [Parsed::Error(
                b"ERR Protocol error: unbalanced quotes in request".to_vec()
            )]
        );
        assert_eq!(parse_all(b"   \r\n\n"), [], "blank lines are no command");
        assert_eq!(
            parse_all(b"GET a\0b\n"),
            [],
            "a NUL hides the LF, as with strchr"
        );
    }

    #[test]
    fn error_text_never_carries_a_line_break() {
        let mut out = Vec::new();
        Resp::err(b"unknown command 'a\r\n+OK'").write(&mut out);
        assert_eq!(out, b"-ERR unknown command 'a  +OK'\r\n");
        out.clear();
        Resp::err(b"Unsupported option \r").write(&mut out);
        assert_eq!(
            out, b"-ERR Unsupported option \r\n",
            "trailing breaks are trimmed"
        );
    }

    #[test]
    fn writes_replies() {
        let mut out = Vec::new();
        Resp::Array(vec![
            Resp::Bulk(Some(b"a".to_vec())),
            Resp::Bulk(None),
            Resp::Int(-3),
            Resp::Simple("OK"),
        ])
        .write(&mut out);
        assert_eq!(out, b"*4\r\n$1\r\na\r\n$-1\r\n:-3\r\n+OK\r\n");
    }
}
