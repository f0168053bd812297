//! One audit-log line → the few fields decisions need, for ModSecurity v3's JSON serial
//! format and Coraza's JSON format alike, without allocating: the parser keeps its buffers
//! and an [`Entry`] borrows them and the line.
//!
//! ModSecurity v3 (libmodsecurity 3.0.x):
//! `{"transaction":{"client_ip":..,"time_stamp":"Sun Nov 22 05:34:49 2026","client_port":..,
//! "unique_id":..,"request":{"method","uri","headers":{"Host":".."}},"response":{"http_code"},
//! "producer":{"secrules_engine":"Enabled"},"messages":[{"message":..,"details":{"ruleId":"942100",
//! "data":..,"severity":"2","tags":[..]}}]}}`.
//! Coraza: `{"transaction":{"id","unix_timestamp","client_ip","client_port","request":{..,
//! "headers":{"Host":[".."]}},"response":{"status"},"producer":{"rule_engine"},"is_interrupted"},
//! "messages":[{"message":..,"data":{"id":942100,"msg","data","severity":2,"tags":[..]}}]}`.

use super::json::{self, JsonError, Span, Walker};

/// Messages kept per entry; more are counted in [`Entry::dropped_messages`].
pub const MAX_MESSAGES: usize = 64;
/// `X-Forwarded-For` headers kept per entry (duplicates are legal and are joined in order).
pub const MAX_XFF: usize = 4;

/// Why a line is not an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BadLine {
    /// Does not start with `{`.
    NotJson,
    /// Ends inside a value (a torn or cut line).
    Truncated,
    /// Broken structure.
    Syntax,
    /// Nested deeper than accepted.
    TooDeep,
    /// JSON, but no `transaction` object.
    NoTransaction,
    /// No `client_ip` in the transaction.
    NoClientIp,
}

impl BadLine {
    pub const ALL: [BadLine; 6] = [
        BadLine::NotJson,
        BadLine::Truncated,
        BadLine::Syntax,
        BadLine::TooDeep,
        BadLine::NoTransaction,
        BadLine::NoClientIp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BadLine::NotJson => "not_json",
            BadLine::Truncated => "truncated",
            BadLine::Syntax => "syntax",
            BadLine::TooDeep => "too_deep",
            BadLine::NoTransaction => "no_transaction",
            BadLine::NoClientIp => "no_client_ip",
        }
    }
}

impl From<JsonError> for BadLine {
    fn from(e: JsonError) -> BadLine {
        match e {
            JsonError::Truncated => BadLine::Truncated,
            JsonError::Syntax => BadLine::Syntax,
            JsonError::TooDeep => BadLine::TooDeep,
        }
    }
}

/// The rule engine mode the producer reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    #[default]
    Unknown,
    /// `SecRuleEngine On` (ModSecurity says "Enabled", Coraza "On").
    On,
    DetectionOnly,
    Off,
}

#[derive(Clone, Debug, Default)]
struct Fields {
    client_ip: Option<Span>,
    client_port: Option<u16>,
    time_stamp: Option<Span>,
    unix_time: Option<u64>,
    unique_id: Option<Span>,
    host: Option<Span>,
    method: Option<Span>,
    uri: Option<Span>,
    status: Option<u16>,
    engine: Engine,
    interrupted: Option<bool>,
    xff: [Span; MAX_XFF],
    xff_len: u8,
    dropped_messages: u32,
}

/// One matched rule.
#[derive(Clone, Copy, Debug, Default)]
pub struct Message {
    pub rule_id: Option<u32>,
    /// Syslog-style severity, 0 (emergency) – 7 (debug).
    pub severity: Option<u8>,
    /// The whole `tags` array value, brackets included.
    tags: Option<Span>,
    /// The first `attack-*` tag (CRS names the attack class there), found while parsing so
    /// classifying needs no second walk over the tags.
    attack_tag: Option<Span>,
    msg: Option<Span>,
    data: Option<Span>,
}

/// Parses lines; reuse one parser for many lines (its buffers are kept).
#[derive(Default)]
pub struct Parser {
    fields: Fields,
    messages: Vec<Message>,
    quotes: json::QuoteIndex,
}

/// A parsed entry, borrowing the line and the parser.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    line: &'a [u8],
    fields: &'a Fields,
    messages: &'a [Message],
    quotes: &'a [u64],
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    pub fn parse<'a>(&'a mut self, line: &'a [u8]) -> Result<Entry<'a>, BadLine> {
        self.parse_with(line, |_| {})
    }

    /// [`parse`](Self::parse), calling `on_client_ip` with the raw `client_ip` (what
    /// [`Entry::client_ip`] will return) as soon as it is read, early in the line: the caller
    /// can start fetching that client's state while the rest is parsed. Called at most once.
    pub fn parse_with<'a>(
        &'a mut self,
        line: &'a [u8],
        mut on_client_ip: impl FnMut(&[u8]),
    ) -> Result<Entry<'a>, BadLine> {
        self.fields = Fields::default();
        self.messages.clear();
        if line.len() > u32::MAX as usize {
            return Err(BadLine::TooDeep);
        }
        if line.trim_ascii_start().first() != Some(&b'{') {
            return Err(BadLine::NotJson);
        }
        let mut w = Walker::with_index(line, self.quotes.build(line), 0);
        let (fields, messages) = (&mut self.fields, &mut self.messages);
        let mut has_transaction = false;
        w.object(|w, key| match key {
            b"transaction" => {
                has_transaction |=
                    w.object(|w, key| transaction(w, key, fields, messages, &mut on_client_ip))?;
                Ok(())
            }
            b"messages" => message_list(w, fields, messages),
            _ => w.skip(),
        })?;
        if !has_transaction {
            return Err(BadLine::NoTransaction);
        }
        if self.fields.client_ip.is_none() {
            return Err(BadLine::NoClientIp);
        }
        Ok(Entry {
            line,
            fields: &self.fields,
            messages: &self.messages,
            quotes: self.quotes.bits(),
        })
    }
}

fn transaction(
    w: &mut Walker<'_>,
    key: &[u8],
    f: &mut Fields,
    messages: &mut Vec<Message>,
    on_client_ip: &mut impl FnMut(&[u8]),
) -> Result<(), JsonError> {
    match key {
        b"client_ip" if f.client_ip.is_none() => {
            f.client_ip = w.opt_string()?;
            if let Some(ip) = f.client_ip {
                on_client_ip(ip.get(w.input()));
            }
        }
        b"client_port" if f.client_port.is_none() => {
            f.client_port = w.number()?.and_then(|n| u16::try_from(n).ok());
        }
        b"time_stamp" if f.time_stamp.is_none() => f.time_stamp = w.opt_string()?,
        b"unix_timestamp" if f.unix_time.is_none() => f.unix_time = w.number()?,
        b"unique_id" | b"id" if f.unique_id.is_none() => f.unique_id = w.opt_string()?,
        b"request" => {
            w.object(|w, key| match key {
                b"method" if f.method.is_none() => w.opt_string().map(|s| f.method = s),
                b"uri" if f.uri.is_none() => w.opt_string().map(|s| f.uri = s),
                b"headers" => w.object(|w, name| header(w, name, f)).map(drop),
                _ => w.skip(),
            })?;
        }
        b"response" => {
            w.object(|w, key| match key {
                b"http_code" | b"status" if f.status.is_none() => {
                    f.status = w.number()?.and_then(|n| u16::try_from(n).ok());
                    Ok(())
                }
                _ => w.skip(),
            })?;
        }
        b"producer" => {
            w.object(|w, key| match key {
                b"secrules_engine" | b"rule_engine" => {
                    if let Some(s) = w.opt_string()? {
                        f.engine = engine(s.get(w.input()));
                    }
                    Ok(())
                }
                _ => w.skip(),
            })?;
        }
        b"is_interrupted" => {
            f.interrupted = match w.scalar()? {
                b"true" => Some(true),
                b"false" => Some(false),
                _ => None,
            };
        }
        b"messages" => message_list(w, f, messages)?,
        _ => w.skip()?,
    }
    Ok(())
}

fn engine(s: &[u8]) -> Engine {
    if s.eq_ignore_ascii_case(b"Enabled") || s.eq_ignore_ascii_case(b"On") {
        Engine::On
    } else if s.eq_ignore_ascii_case(b"DetectionOnly") {
        Engine::DetectionOnly
    } else if s.eq_ignore_ascii_case(b"Disabled") || s.eq_ignore_ascii_case(b"Off") {
        Engine::Off
    } else {
        Engine::Unknown
    }
}

/// A request header: ModSecurity gives a string, Coraza an array of strings.
fn header(w: &mut Walker<'_>, name: &[u8], f: &mut Fields) -> Result<(), JsonError> {
    let is_host = name.eq_ignore_ascii_case(b"host");
    let is_xff = !is_host && name.eq_ignore_ascii_case(b"x-forwarded-for");
    if !is_host && !is_xff {
        return w.skip();
    }
    let take = |s: Span, f: &mut Fields| {
        if is_host {
            f.host.get_or_insert(s);
        } else if (f.xff_len as usize) < MAX_XFF {
            f.xff[f.xff_len as usize] = s;
            f.xff_len += 1;
        }
    };
    if w.peek() == Some(b'[') {
        w.array(|w| {
            if let Some(s) = w.opt_string()? {
                take(s, f);
            }
            Ok(())
        })?;
    } else if let Some(s) = w.opt_string()? {
        take(s, f);
    }
    Ok(())
}

fn message_list(
    w: &mut Walker<'_>,
    f: &mut Fields,
    messages: &mut Vec<Message>,
) -> Result<(), JsonError> {
    w.array(|w| {
        let mut m = Message::default();
        w.object(|w, key| match key {
            b"message" if m.msg.is_none() => w.opt_string().map(|s| m.msg = s),
            // ModSecurity: "details":{..}; Coraza: "data":{..}.
            b"details" | b"data" => w.object(|w, key| details(w, key, &mut m)).map(drop),
            _ => w.skip(),
        })?;
        if messages.len() < MAX_MESSAGES {
            messages.push(m);
        } else {
            f.dropped_messages += 1;
        }
        Ok(())
    })
    .map(drop)
}

fn details(w: &mut Walker<'_>, key: &[u8], m: &mut Message) -> Result<(), JsonError> {
    match key {
        b"ruleId" | b"id" if m.rule_id.is_none() => {
            m.rule_id = w.number()?.and_then(|n| u32::try_from(n).ok());
        }
        b"severity" if m.severity.is_none() => {
            m.severity = if w.peek() == Some(b'"') {
                let s = w.string()?;
                severity(s.get(w.input()))
            } else {
                w.number()?.and_then(|n| u8::try_from(n).ok())
            };
        }
        b"tags" if m.tags.is_none() => {
            w.peek();
            let start = w.offset();
            let input = w.input();
            let attack_tag = &mut m.attack_tag;
            let walked = w.array(|w| {
                if let Some(t) = w.opt_string()?
                    && attack_tag.is_none()
                    && t.get(input).starts_with(b"attack-")
                {
                    *attack_tag = Some(t);
                }
                Ok(())
            })?;
            if walked {
                m.tags = Some(Span {
                    start,
                    end: w.offset(),
                });
            }
        }
        // Coraza keeps the rule's msg here (its top-level "message" is the match text).
        b"msg" => {
            if let Some(s) = w.opt_string()? {
                m.msg = Some(s);
            }
        }
        b"data" if m.data.is_none() => m.data = w.opt_string()?,
        _ => w.skip()?,
    }
    Ok(())
}

/// `"2"` or `"CRITICAL"`.
fn severity(s: &[u8]) -> Option<u8> {
    if let Some(n) = json::parse_u64(s) {
        return u8::try_from(n).ok().filter(|&n| n <= 7);
    }
    const NAMES: [&[u8]; 8] = [
        b"EMERGENCY",
        b"ALERT",
        b"CRITICAL",
        b"ERROR",
        b"WARNING",
        b"NOTICE",
        b"INFO",
        b"DEBUG",
    ];
    NAMES
        .iter()
        .position(|n| s.eq_ignore_ascii_case(n))
        .map(|p| p as u8)
}

impl<'a> Entry<'a> {
    fn span(&self, s: Option<Span>) -> &'a [u8] {
        s.map(|s| s.get(self.line)).unwrap_or_default()
    }

    /// The raw `client_ip` (escapes not decoded; a valid address never has any).
    pub fn client_ip(&self) -> &'a [u8] {
        self.span(self.fields.client_ip)
    }

    pub fn client_port(&self) -> Option<u16> {
        self.fields.client_port
    }

    /// Raw `X-Forwarded-For` header values, in order.
    pub fn forwarded_for(&self) -> impl DoubleEndedIterator<Item = &'a [u8]> + 'a {
        let line = self.line;
        self.fields.xff[..self.fields.xff_len as usize]
            .iter()
            .map(move |s| s.get(line))
    }

    pub fn unique_id(&self) -> &'a [u8] {
        self.span(self.fields.unique_id)
    }

    /// The `Host` header (raw).
    pub fn host(&self) -> &'a [u8] {
        self.span(self.fields.host)
    }

    pub fn method(&self) -> &'a [u8] {
        self.span(self.fields.method)
    }

    pub fn uri(&self) -> &'a [u8] {
        self.span(self.fields.uri)
    }

    pub fn status(&self) -> Option<u16> {
        self.fields.status
    }

    pub fn engine(&self) -> Engine {
        self.fields.engine
    }

    /// Coraza's `is_interrupted`, when present.
    pub fn interrupted(&self) -> Option<bool> {
        self.fields.interrupted
    }

    /// Seconds since the Unix epoch: Coraza's `unix_timestamp` (s, ms or ns), or ModSecurity's
    /// `time_stamp` (`Sun Nov 22 05:34:49 2026`, read as UTC).
    pub fn unix_time(&self) -> Option<u64> {
        if let Some(t) = self.fields.unix_time {
            return Some(match t {
                t if t >= 100_000_000_000_000 => t / 1_000_000_000,
                t if t >= 100_000_000_000 => t / 1_000,
                t => t,
            });
        }
        parse_ctime(self.span(self.fields.time_stamp))
    }

    /// ModSecurity's raw `time_stamp` (empty for Coraza).
    pub fn time_stamp(&self) -> &'a [u8] {
        if self.fields.unix_time.is_some() {
            return &[];
        }
        self.span(self.fields.time_stamp)
    }

    pub fn messages(&self) -> &'a [Message] {
        self.messages
    }

    /// Messages beyond [`MAX_MESSAGES`], not kept.
    pub fn dropped_messages(&self) -> u32 {
        self.fields.dropped_messages
    }

    pub fn line(&self) -> &'a [u8] {
        self.line
    }

    pub fn msg(&self, m: &Message) -> &'a [u8] {
        self.span(m.msg)
    }

    pub fn data(&self, m: &Message) -> &'a [u8] {
        self.span(m.data)
    }

    /// The message's first `attack-*` tag (raw), empty when none.
    pub fn attack_tag(&self, m: &Message) -> &'a [u8] {
        self.span(m.attack_tag)
    }

    /// Calls `f` with each tag (raw) of a message.
    pub fn tags(&self, m: &Message, f: impl FnMut(&[u8])) {
        if let Some(t) = m.tags {
            json::strings_in(
                Walker::with_index(self.line, self.quotes, t.start as usize),
                f,
            );
        }
    }
}

/// `Sun Nov 22 05:34:49 2026` (C's `ctime` layout, as libmodsecurity writes it) → Unix seconds.
pub fn parse_ctime(s: &[u8]) -> Option<u64> {
    let mut parts = s.split(|&c| c == b' ').filter(|p| !p.is_empty());
    let _weekday = parts.next()?;
    let month = parts.next()?;
    let day = json::parse_u64(parts.next()?)?;
    let hms = parts.next()?;
    let year = json::parse_u64(parts.next()?)?;
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let mut t = hms.split(|&c| c == b':');
    let (h, m, sec) = (
        json::parse_u64(t.next()?)?,
        json::parse_u64(t.next()?)?,
        json::parse_u64(t.next()?)?,
    );
    if !(1970..=9999).contains(&year) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime() {
        assert_eq!(
            parse_ctime(b"Sun Nov 22 05:34:49 2026"),
            Some(1_795_325_689)
        );
        assert_eq!(parse_ctime(b"Thu Jan  1 00:00:00 1970"), Some(0));
        assert_eq!(parse_ctime(b"Thu Foo  1 00:00:00 1970"), None);
    }

    #[test]
    fn odd_but_tolerated() {
        // Duplicate headers, numbers as strings, http_version as a number, invalid UTF-8, a NUL.
        let line = b"{\"transaction\":{\"client_ip\":\"10.0.0.1\",\"client_port\":\"4242\",\
            \"request\":{\"method\":\"GET\",\"http_version\":1.1,\"uri\":\"/\xff\x00\",\
            \"headers\":{\"X-Forwarded-For\":\"1.1.1.1\",\"host\":\"a\",\"Host\":\"b\",\
            \"x-forwarded-for\":\"2.2.2.2\"}},\"response\":{\"http_code\":\"403\"},\
            \"messages\":[{\"message\":\"m\",\"details\":{\"ruleId\":\"942100\",\"severity\":\"CRITICAL\",\
            \"tags\":[]}}]}}";
        let mut p = Parser::new();
        let e = p.parse(line).unwrap();
        assert_eq!(e.client_ip(), b"10.0.0.1");
        assert_eq!(e.client_port(), Some(4242));
        assert_eq!(e.host(), b"a");
        assert_eq!(
            e.forwarded_for().collect::<Vec<_>>(),
            [b"1.1.1.1", b"2.2.2.2"]
        );
        assert_eq!(e.status(), Some(403));
        assert_eq!(e.uri(), b"/\xff\x00");
        let m = e.messages()[0];
        assert_eq!((m.rule_id, m.severity), (Some(942100), Some(2)));
        let mut tags = 0;
        e.tags(&m, |_| tags += 1);
        assert_eq!(tags, 0);
    }

    #[test]
    fn coraza_format() {
        let line = br#"{"transaction":{"timestamp":"2024/01/02 03:04:05","unix_timestamp":1700000000123456789,"id":"abc","client_ip":"::ffff:10.1.2.3","client_port":5555,"request":{"method":"GET","uri":"/x","http_version":"HTTP/1.1","headers":{"Host":["shop.example"],"X-Forwarded-For":["9.9.9.9, 8.8.8.8"]}},"response":{"status":403},"producer":{"rule_engine":"On"},"is_interrupted":true},"messages":[{"actionset":"","message":"XSS Attack","data":{"file":"f","line":1,"id":941100,"msg":"XSS Attack Detected via libinjection","data":"Matched Data","severity":2,"tags":["attack-xss"]}}]}"#;
        let mut p = Parser::new();
        let e = p.parse(line).unwrap();
        assert_eq!(e.unique_id(), b"abc");
        assert_eq!(e.unix_time(), Some(1_700_000_000));
        assert_eq!(e.host(), b"shop.example");
        assert_eq!(e.engine(), Engine::On);
        assert_eq!(e.interrupted(), Some(true));
        let m = e.messages()[0];
        assert_eq!(m.rule_id, Some(941100));
        assert_eq!(e.msg(&m), b"XSS Attack Detected via libinjection");
        let mut tags = Vec::new();
        e.tags(&m, |t| tags.push(t.to_vec()));
        assert_eq!(tags, [b"attack-xss".to_vec()]);
    }

    #[test]
    fn bad_lines_by_kind() {
        let mut p = Parser::new();
        assert_eq!(p.parse(b"hello").err(), Some(BadLine::NotJson));
        assert_eq!(
            p.parse(b"{\"transaction\":{\"client_ip\":\"1").err(),
            Some(BadLine::Truncated)
        );
        assert_eq!(p.parse(b"{\"a\":1}").err(), Some(BadLine::NoTransaction));
        assert_eq!(
            p.parse(b"{\"transaction\":{}}").err(),
            Some(BadLine::NoClientIp)
        );
    }
}
