//! RESP2: parsing requests (arrays of bulk strings, and inline commands) and writing replies.

/// A reply value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(&'static str),
    /// `-ERR ...` (the text after the dash).
    Error(String),
    /// `:42`
    Int(i64),
    /// `$3 foo`, or `$-1` for `None`.
    Bulk(Option<Vec<u8>>),
    /// `*N ...`
    Array(Vec<Resp>),
}

impl Resp {
    /// `-ERR <msg>`.
    pub fn err(msg: impl Into<String>) -> Self {
        Resp::Error(format!("ERR {}", msg.into()))
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
                out.extend_from_slice(e.as_bytes());
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

/// The outcome of parsing the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A command (possibly empty, which is to be ignored) and the bytes it used.
    Command(Vec<Vec<u8>>, usize),
    /// More bytes are needed.
    Incomplete,
    /// A protocol error: redis replies with this message and closes the connection.
    Error(String),
}

/// Largest multibulk length redis accepts.
const MAX_MULTIBULK: i64 = 1024 * 1024;
/// Largest inline command line redis accepts.
const MAX_INLINE: usize = 64 * 1024;

fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[..end], end + 2))
}

fn number(bytes: &[u8]) -> Option<i64> {
    // Fast path for the common case (a short run of digits); anything else takes std's parser,
    // so the accepted forms are exactly `i64::from_str`'s.
    if !bytes.is_empty() && bytes.len() <= 18 && bytes.iter().all(u8::is_ascii_digit) {
        return Some(
            bytes
                .iter()
                .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0')),
        );
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Parses one command from the front of `buf`. `max_bulk` bounds a bulk string's length.
pub fn parse(buf: &[u8], max_bulk: usize) -> Parsed {
    if buf.is_empty() {
        return Parsed::Incomplete;
    }
    if buf[0] != b'*' {
        return parse_inline(buf);
    }
    let Some((head, mut pos)) = line(buf) else {
        return if buf.len() > MAX_INLINE {
            Parsed::Error("ERR Protocol error: too big mbulk count string".into())
        } else {
            Parsed::Incomplete
        };
    };
    let count = match number(&head[1..]) {
        Some(n) if n <= MAX_MULTIBULK => n,
        _ => return Parsed::Error("ERR Protocol error: invalid multibulk length".into()),
    };
    if count <= 0 {
        return Parsed::Command(Vec::new(), pos);
    }
    let mut args = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let rest = &buf[pos..];
        if rest.is_empty() {
            return Parsed::Incomplete;
        }
        if rest[0] != b'$' {
            return Parsed::Error(format!(
                "ERR Protocol error: expected '$', got '{}'",
                rest[0] as char
            ));
        }
        let Some((len_line, used)) = line(rest) else {
            return if rest.len() > MAX_INLINE {
                Parsed::Error("ERR Protocol error: too big bulk count string".into())
            } else {
                Parsed::Incomplete
            };
        };
        let len = match number(&len_line[1..]) {
            Some(n) if n >= 0 && (n as u64) <= max_bulk as u64 => n as usize,
            _ => return Parsed::Error("ERR Protocol error: invalid bulk length".into()),
        };
        let start = pos + used;
        if buf.len() < start + len + 2 {
            return Parsed::Incomplete;
        }
        args.push(buf[start..start + len].to_vec());
        pos = start + len + 2;
    }
    Parsed::Command(args, pos)
}

fn parse_inline(buf: &[u8]) -> Parsed {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_INLINE {
            Parsed::Error("ERR Protocol error: too big inline request".into())
        } else {
            Parsed::Incomplete
        };
    };
    let text = &buf[..end];
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let args = text
        .split(|b| b.is_ascii_whitespace())
        .filter(|a| !a.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Parsed::Command(args, end + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arrays_pipelines_and_partial_input() {
        let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        let Parsed::Command(args, used) = parse(buf, 1024) else {
            panic!()
        };
        assert_eq!(args, [b"GET".to_vec(), b"k".to_vec()]);
        assert_eq!(
            parse(&buf[used..], 1024),
            Parsed::Command(vec![b"PING".to_vec()], 14)
        );
        for cut in 1..used {
            assert_eq!(parse(&buf[..cut], 1024), Parsed::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn reports_redis_protocol_errors() {
        assert_eq!(
            parse(b"*1\r\n:3\r\n", 1024),
            Parsed::Error("ERR Protocol error: expected '$', got ':'".into())
        );
        assert_eq!(
            parse(b"*x\r\n", 1024),
            Parsed::Error("ERR Protocol error: invalid multibulk length".into())
        );
        assert_eq!(
            parse(b"*1\r\n$99\r\n", 10),
            Parsed::Error("ERR Protocol error: invalid bulk length".into())
        );
    }

    #[test]
    fn parses_inline_commands() {
        assert_eq!(
            parse(b"SET a  b\r\n", 10),
            Parsed::Command(vec![b"SET".to_vec(), b"a".to_vec(), b"b".to_vec()], 10)
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
