//! Redaction before storage (SPEC §5): any JSON key or query/form parameter
//! whose name contains `password`, `secret`, `token`, `authorization`,
//! `cookie` or `api_key`/`apikey` (any case, any depth) is stored as
//! `"[REDACTED]"`. Beyond that, what names such a secret where it cannot be
//! taken apart field by field (a string value, a text body) is withheld
//! whole. Bodies over 16 KiB are truncated with a marker.

use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";
pub const MAX_BODY_BYTES: usize = 16 * 1024;

const SENSITIVE: [&str; 8] = ["password", "secret", "token", "authorization", "cookie", "api_key", "apikey", "api-key"];

/// Whether a key or parameter name must have its value hidden, in any case:
/// also spelt with letters whose case folding is ASCII (`toKen` with the
/// Kelvin sign, `paßword`, `ſecret`, a dotless `ı`) or in full-width ones
/// (`ｐａｓｓｗｏｒｄ`).
pub fn is_sensitive(name: &str) -> bool {
    let name = fold_lookalikes(name).to_ascii_lowercase();
    SENSITIVE.iter().any(|s| name.contains(s))
}

/// Whether text names a secret anywhere, read as generously as a reader
/// would: escapes decoded (again and again: `%252577` is `w`), invisible
/// characters dropped, lookalike letters folded. For text that cannot be
/// redacted field by field, naming a secret is reason enough to withhold it.
pub fn mentions_secret(text: &str) -> bool {
    is_sensitive(&read_generously(text))
}

/// Whether a value (a JSON string, a query or form value) holds a secret's
/// name together with something that could set one (`=`, `:`, a tag, a
/// quote, a bracket, a line break): `/cb?access_token=…` or `<password>…`,
/// but not a plain `Secretary` or a search for `password`.
fn holds_named_secret(text: &str) -> bool {
    let read = read_generously(text);
    is_sensitive(&read) && read.contains(['=', ':', '<', '>', '"', '\'', '{', '[', '\n', '\r'])
}

/// Text with escapes decoded (a few times over) and what shows as nothing
/// dropped: invisible characters, and controls other than line breaks and tabs.
fn read_generously(text: &str) -> String {
    let shown = |c: &char| !super::types::is_invisible(*c) && (!c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    let mut read: String = text.chars().filter(shown).collect();
    for _ in 0..4 {
        let decoded = percent_decode(&unescape_for_scrubbing(&read));
        if decoded == read {
            break;
        }
        read = decoded.chars().filter(shown).collect();
    }
    read
}

/// The few non-ASCII letters that case-fold into ASCII ones, and the
/// full-width forms of ASCII (`ｐ`), which read as the letter they widen.
fn is_lookalike(c: char) -> bool {
    matches!(c, 'ß' | 'ẞ' | 'İ' | 'ı' | 'ſ' | '\u{212A}' | '\u{FF01}'..='\u{FF5E}')
}

/// Replaces the lookalikes by the ASCII letters they fold into; every other
/// character stays. Byte offsets change only when one is present.
fn fold_lookalikes(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(is_lookalike) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'ß' | 'ẞ' => out.push_str("ss"),
            'İ' | 'ı' => out.push('i'),
            'ſ' => out.push('s'),
            '\u{212A}' => out.push('k'),
            '\u{FF01}'..='\u{FF5E}' => {
                out.push(char::from_u32(c as u32 - 0xFEE0).expect("full-width forms map onto ASCII"))
            }
            c => out.push(c),
        }
    }
    out.into()
}

/// A redacted copy of a JSON value, at any depth.
pub fn redact_json(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            // A name/value pair (`{"name": "password", "value": …}`, as form
            // serializers and tag lists write them) names its secret in a value.
            let pair_names_secret = ["name", "key", "field", "param"]
                .iter()
                .any(|k| map.get(*k).and_then(Value::as_str).is_some_and(mentions_secret));
            let hidden = |k: &str| mentions_secret(k) || pair_names_secret && matches!(k, "value" | "values" | "val");
            Value::Object(
                map.iter()
                    .map(|(k, v)| match hidden(k) {
                        true => (secret_name_for_log(k, false).into_owned(), Value::String(REDACTED.into())),
                        false => (k.clone(), redact_json(v)),
                    })
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(redact_json).collect()),
        // A string may itself hold JSON, a query, XML or YAML: one that sets
        // a secret is withheld whole.
        Value::String(text) if holds_named_secret(text) => Value::String(REDACTED.into()),
        other => other.clone(),
    }
}

/// A redacted copy of a query string or form body (`a=1&password=x`, also
/// with `;` between pairs), keeping the order and the encoding of what is not
/// redacted. Names are decoded once as a form would be, then any escapes left
/// (`pass%2577ord`) are read too.
pub fn redact_query(query: &str) -> String {
    query
        .split_inclusive(['&', ';'])
        .map(|piece| {
            let (pair, separator) = match piece.char_indices().last() {
                Some((at, '&' | ';')) => piece.split_at(at),
                _ => (piece, ""),
            };
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(&raw_key.replace('+', " "));
            if mentions_secret(&key) {
                format!("{}={REDACTED}{separator}", secret_name_for_log(raw_key, true))
            } else if holds_named_secret(&percent_decode(&raw_value.replace('+', " "))) {
                // A value naming a secret (`next=/cb?access_token=…`) is withheld.
                format!("{raw_key}={REDACTED}{separator}")
            } else {
                piece.to_owned()
            }
        })
        .collect()
}

/// Longest path stored, in characters; longer ones are cut with a marker.
pub const MAX_PATH_CHARS: usize = 2048;

/// A request's path as stored: characters a client percent-encoded that
/// would not show as themselves (`%00` and other controls, direction marks
/// that reorder the display, invisible and line-separating characters) or
/// would read as the start of a query or fragment (`%3F`, `%23`) are encoded
/// again, so that the path reads as what was asked and can be stored
/// (PostgreSQL text holds no NUL); cut at `MAX_PATH_CHARS`.
pub fn path_for_log(path: &str) -> String {
    let mut stored = String::with_capacity(path.len().min(MAX_PATH_CHARS));
    for (count, c) in path.chars().enumerate() {
        if count == MAX_PATH_CHARS {
            stored.push_str(&format!(
                "…[truncated {} bytes]",
                path.len() - path.char_indices().nth(count).map_or(0, |(at, _)| at)
            ));
            break;
        }
        let unseen = c.is_control() || super::types::is_invisible(c) || matches!(c, '\u{2028}' | '\u{2029}');
        if unseen || matches!(c, '?' | '#') {
            let mut bytes = [0; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                stored.push_str(&format!("%{byte:02X}"));
            }
        } else {
            stored.push(c);
        }
    }
    stored
}

/// A secret's name as stored: up to the first character that cannot be part
/// of a name (letters, digits, `_ - . [ ] $`). Past it the "name" may carry
/// the secret itself (`password: hunter2`, `authorization:Bearer …`,
/// `password%3D…`), so the rest is replaced by the marker. In a raw query or
/// form name (`escaped`), an escape counts as the character it encodes.
fn secret_name_for_log(raw: &str, escaped: bool) -> std::borrow::Cow<'_, str> {
    let is_name_char = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']' | '$');
    let mut at = 0;
    'name: while let Some(c) = raw[at..].chars().next() {
        if escaped && c == '%' {
            // A run of escapes spells UTF-8 (`%EF%BD%90` is `ｐ`): read it whole.
            let mut bytes = Vec::new();
            let mut end = at;
            while let Some(byte) = raw.get(end..end + 3).and_then(|e| e.strip_prefix('%')).and_then(hex_byte) {
                bytes.push(byte);
                end += 3;
            }
            let spelt = std::str::from_utf8(&bytes)
                .unwrap_or_else(|e| std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid up to here"));
            for c in spelt.chars() {
                if !is_name_char(c) {
                    break 'name;
                }
                at += 3 * c.len_utf8();
            }
            if spelt.len() < bytes.len() || bytes.is_empty() {
                break;
            }
        } else if is_name_char(c) {
            at += c.len_utf8();
        } else {
            break;
        }
    }
    if at == raw.len() {
        raw.into()
    } else {
        format!("{}{REDACTED}", &raw[..at]).into()
    }
}

/// What a request body is stored as.
pub fn redact_body(body: &[u8], content_type: Option<&str>) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let original_type = content_type.unwrap_or_default();
    let content_type = original_type.trim_start().to_ascii_lowercase();
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        return Some(truncate(redact_json(&json).to_string()));
    }
    // Binary (or UTF-16) content cannot be scrubbed as text, and NUL cannot be
    // stored in PostgreSQL text: its size is recorded instead.
    if body.contains(&0) {
        return Some(format!("[binary body of {} bytes not stored]", body.len()));
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return Some(truncate(redact_query(&String::from_utf8_lossy(body))));
    }
    if content_type.starts_with("multipart/") {
        return Some(truncate(redact_multipart(body, original_type)));
    }
    let lossy = String::from_utf8_lossy(body);
    // Multipart sent under another content type is still read as parts.
    if opening_boundary(&lossy).is_some() && lossy.to_ascii_lowercase().contains("content-disposition") {
        return Some(truncate(redact_multipart(body, "")));
    }
    // Text in no structure that can be redacted field by field (broken JSON,
    // XML, YAML, prose): where the secret's value ends cannot be known, so
    // text naming a secret is not stored at all.
    if mentions_secret(&lossy) {
        return Some(format!("[text body of {} bytes not stored: it names a secret]", body.len()));
    }
    Some(truncate(lossy.into_owned()))
}

/// The boundary a multipart body opens with: `--boundary` on its first line.
fn opening_boundary(text: &str) -> Option<&str> {
    let first = text.trim_start_matches(['\r', '\n']).lines().next()?;
    let boundary = first.strip_prefix("--")?.trim_end();
    (!boundary.is_empty() && !boundary.contains(char::is_whitespace)).then_some(boundary)
}

/// A multipart body: each part whose headers name a secret (however spelt:
/// `Name=`, `name = `, `name*=UTF-8''…`) has its content replaced; the others
/// are scrubbed as text. A body that does not parse is not stored at all
/// rather than stored unredacted.
fn redact_multipart(body: &[u8], content_type: &str) -> String {
    let unparsable = || format!("[multipart body of {} bytes not stored: it could not be parsed]", body.len());
    let text = String::from_utf8_lossy(body);
    // The boundary is case-sensitive; the parameter name is not. Without one,
    // the body's first line says it.
    let declared = content_type
        .split(';')
        .filter_map(|p| p.trim().get(..9).filter(|n| n.eq_ignore_ascii_case("boundary=")).map(|_| &p.trim()[9..]))
        .map(|b| b.trim_matches('"'))
        .find(|b| !b.is_empty());
    let Some(boundary) = declared.or_else(|| opening_boundary(&text)) else {
        return unparsable();
    };
    let delimiter = format!("--{boundary}");
    let mut parts = text.split(delimiter.as_str());
    let preamble = parts.next().unwrap_or_default();
    let mut out = scrub_text(preamble);
    let mut closed = false;
    for part in parts {
        out.push_str(&delimiter);
        if let Some(after_close) = part.strip_prefix("--") {
            // The closing delimiter. Nothing reads an epilogue, and parts
            // written after the end would not be parsed as parts: not stored.
            let epilogue = after_close.trim_start_matches(['\r', '\n']);
            out.push_str("--");
            out.push_str(&after_close[..after_close.len() - epilogue.len()]);
            if !epilogue.trim().is_empty() {
                out.push_str(&format!("[epilogue of {} bytes not stored]", epilogue.len()));
            }
            closed = true;
            break;
        }
        let Some((headers, content)) = part.split_once("\r\n\r\n").or_else(|| part.split_once("\n\n")) else {
            return unparsable();
        };
        let separator = if part.contains("\r\n\r\n") { "\r\n\r\n" } else { "\n\n" };
        // Part headers are text like any other (`Authorization: …` included).
        out.push_str(&scrub_text(headers));
        out.push_str(separator);
        // Anything in the part's headers spelling a secret hides its content
        // (a file name like `tokens.txt` too: better hidden than leaked).
        // So does a name split or encoded (RFC 2231 `name*0=`, RFC 2047
        // `=?…?=`), content in a transfer encoding, or content naming a secret.
        let lower = headers.to_ascii_lowercase();
        let hidden_name = lower.contains("*0") || lower.contains("=?") || lower.contains("content-transfer-encoding");
        if hidden_name || mentions_secret(headers) || mentions_secret(content) {
            out.push_str(REDACTED);
            out.push_str(if content.ends_with("\r\n") { "\r\n" } else { "\n" });
        } else {
            out.push_str(content);
        }
    }
    if closed {
        out
    } else {
        unparsable()
    }
}

/// Cuts text over the limit at a character boundary and says how much is
/// gone, counting `already_dropped` bytes that never made it into `text`.
fn cut(text: String, already_dropped: usize) -> String {
    if text.len() <= MAX_BODY_BYTES && already_dropped == 0 {
        return text;
    }
    let mut at = text.len().min(MAX_BODY_BYTES);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}…[truncated {} bytes]", &text[..at], text.len() - at + already_dropped)
}

/// Cuts text over the limit at a character boundary and says how much is gone.
pub fn truncate(text: String) -> String {
    cut(text, 0)
}

/// For text kept beside structured content (a multipart body's preamble and
/// part headers, `Authorization: …` lines included): after a sensitive name, the value that
/// follows `:`, `=` or `>` is hidden — a quoted value up to its closing quote,
/// an XML value up to the next tag, anything else up to the end of its line
/// (so `Authorization: Bearer abc` loses all of `Bearer abc`), and an object
/// or array up to its matching bracket. A name followed by anything else (a
/// comment, prose) hides the rest of its line. Names written with escapes
/// (`\u0077`, `\x77`, `%77`, `%2577`, `&#119;`), with letters that case-fold
/// to ASCII, or with wide spaces before the separator, are read as what they
/// spell. One pass.
pub fn scrub_text(original: &str) -> String {
    // Scanned as read (escapes decoded, lookalikes folded), stored as sent:
    // every span kept is copied from the original.
    let mapped = as_read(original);
    let (text, origin) = match &mapped {
        Some((read, origin)) => (read.as_str(), Some(origin)),
        None => (original, None),
    };
    let kept = |from: usize, to: usize| match origin {
        Some(origin) => &original[origin[from]..origin[to]],
        None => &original[from..to],
    };
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    // Next occurrence of each name at or after the cursor; searched again only
    // once the cursor has passed it, so the whole scan stays linear.
    let mut next: Vec<Option<usize>> = SENSITIVE.iter().map(|s| lower.find(s)).collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    loop {
        for (k, word) in SENSITIVE.iter().enumerate() {
            if next[k].is_some_and(|at| at < i) {
                next[k] = lower[i..].find(word).map(|at| i + at);
            }
        }
        let Some((k, start)) =
            next.iter().enumerate().filter_map(|(k, at)| at.map(|at| (k, at))).min_by_key(|(_, at)| *at)
        else {
            out.push_str(kept(i, bytes.len()));
            return out;
        };
        let mut j = start + SENSITIVE[k].len();
        // The rest of the name, its closing quote and any space, then the separator.
        while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || matches!(bytes[j], b'_' | b'-')) {
            j += 1;
        }
        // An element named like a secret, with attributes (`<password
        // kind="otp">`, `<token value="…"/>`): every attribute is hidden, and
        // its value starts after the tag closes.
        if start > 0 && bytes[start - 1] == b'<' && bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
            if let Some(close) = text[j..].find(['>', '<']).filter(|&at| bytes[j + at] == b'>') {
                let self_closing = text[..j + close].ends_with('/');
                out.push_str(kept(i, j));
                out.push(' ');
                out.push_str(REDACTED);
                if self_closing {
                    out.push('/');
                }
                i = j + close;
                j = i;
            }
        }
        let name_end = j;
        while j < bytes.len() && matches!(bytes[j], b'"' | b'\'' | b' ' | b'\t' | b'\r' | b'\n') {
            j += 1;
        }
        let separated = j < bytes.len() && matches!(bytes[j], b':' | b'=' | b'>');
        if !separated && (j >= bytes.len() || bytes[name_end..j].iter().any(|b| matches!(b, b'\r' | b'\n'))) {
            // Nothing follows on the name's line.
            out.push_str(kept(i, j));
            i = j;
            continue;
        }
        if !separated {
            // Followed by something that is not a separator (a comment, a
            // word: `the password is hunter2`): what follows on its line may
            // be the secret, and is hidden.
            out.push_str(kept(i, j));
            out.push_str(REDACTED);
            i = text[j..].find(['\n', '\r']).map_or(bytes.len(), |e| j + e);
            continue;
        }
        let is_xml = bytes[j] == b'>';
        j += 1;
        while j < bytes.len() && matches!(bytes[j], b' ' | b'\t' | b'\r' | b'\n') {
            j += 1;
        }
        out.push_str(kept(i, j));
        let value_end = match bytes.get(j) {
            _ if is_xml => {
                let end = text[j..].find('<').map_or(bytes.len(), |e| j + e);
                // `</password>` closes an element: there is no value after it.
                if end > j {
                    out.push_str(REDACTED);
                }
                end
            }
            Some(&quote @ (b'"' | b'\'')) => {
                // Up to the matching unescaped quote, or the end of the text.
                let mut e = j + 1;
                while e < bytes.len() && bytes[e] != quote {
                    e += if bytes[e] == b'\\' { 2 } else { 1 };
                }
                out.push(quote as char);
                out.push_str(REDACTED);
                if e < bytes.len() {
                    out.push(quote as char);
                }
                (e + 1).min(bytes.len())
            }
            // An object or array (JSON that failed to parse): all of it, to
            // its matching bracket, however many lines it spans.
            Some(b'{' | b'[') => {
                out.push_str(REDACTED);
                matching_bracket(bytes, j).map_or(bytes.len(), |e| e + 1)
            }
            _ => {
                out.push_str(REDACTED);
                text[j..].find(['\n', '\r']).map_or(bytes.len(), |e| j + e)
            }
        };
        i = value_end;
    }
}

/// Where the bracket opened at `open` closes, skipping brackets inside
/// strings; `None` when it never does.
fn matching_bracket(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'{' | b'[' if !in_string => depth += 1,
            b'}' | b']' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The text as [`scrub_text`] reads it: escapes of name characters decoded
/// (`unescape_for_scrubbing`) and lookalike letters folded
/// (`fold_lookalikes`), with, for each of its bytes and one past its end,
/// where that byte's source starts in `text`. `None` when it reads as written.
fn as_read(text: &str) -> Option<(String, Vec<usize>)> {
    let wide_space = |c: char| c.is_whitespace() && !c.is_ascii();
    if !text.contains(['\\', '%', '&']) && !text.contains(|c| is_lookalike(c) || wide_space(c)) {
        return None;
    }
    let mut read = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    let mut at = 0;
    while at < text.len() {
        let rest = &text[at..];
        let (decoded, len) = match decode_escape(rest) {
            Some((c, len)) => (c, len),
            None => {
                let c = rest.chars().next().expect("not at the end");
                (c, c.len_utf8())
            }
        };
        let before = read.len();
        let mut buf = [0; 4];
        // A no-break or ideographic space reads as a space between name and value.
        let decoded = if wide_space(decoded) { ' ' } else { decoded };
        read.push_str(&fold_lookalikes(decoded.encode_utf8(&mut buf)));
        origin.resize(read.len(), at);
        debug_assert!(read.len() > before);
        at += len;
    }
    origin.push(text.len());
    Some((read, origin))
}

/// The name character an escape at the start of `rest` stands for, and the
/// escape's length.
fn decode_escape(rest: &str) -> Option<(char, usize)> {
    let name_char =
        |code: u32| char::from_u32(code).filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | ':'));
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    // HTML character references: `&#119;` and `&#x77;`.
    if let Some(reference) = rest.strip_prefix("&#") {
        let end = reference.get(..reference.len().min(8))?.find(';')?;
        let (digits, radix) = match reference[..end].strip_prefix(['x', 'X']) {
            Some(hex_digits) => (hex_digits, 16),
            None => (&reference[..end], 10),
        };
        let code = u32::from_str_radix(digits, radix).ok().filter(|_| !digits.starts_with('+'))?;
        return name_char(code).map(|c| (c, end + 3));
    }
    // `\u{77}` (JavaScript, Rust) and `\167` (octal).
    if let Some(braced) = rest.strip_prefix("\\u{") {
        let end = braced.get(..braced.len().min(7))?.find('}')?;
        return u32::from_str_radix(&braced[..end], 16).ok().and_then(name_char).map(|c| (c, end + 4));
    }
    if let Some(octal) =
        rest.get(1..4).filter(|d| rest.starts_with('\\') && d.bytes().all(|b| (b'0'..=b'7').contains(&b)))
    {
        return u32::from_str_radix(octal, 8).ok().and_then(name_char).map(|c| (c, 4));
    }
    let (digits, len) = if rest.starts_with("\\u") || rest.starts_with("\\U") {
        (rest.get(2..6)?, 6)
    } else if rest.starts_with("\\x") {
        (rest.get(2..4)?, 4)
    } else if rest.starts_with("%25") && rest.get(3..5).is_some_and(|d| d.bytes().all(|b| b.is_ascii_hexdigit())) {
        // Encoded twice (`%2577`): what it spells once decoded twice.
        (rest.get(3..5)?, 5)
    } else if rest.starts_with('%') {
        (rest.get(1..3)?, 3)
    } else {
        return None;
    };
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    hex(digits).and_then(name_char).map(|c| (c, len))
}

/// Replaces escapes (`\uXXXX`, `\xXX`, `%XX`, `%25XX`, `&#N;`, `&#xX;`) that stand for a letter, digit, `_`,
/// `-` or a separator (`=`, `:`) by that character, so that an escaped name or
/// pair is still recognised.
fn unescape_for_scrubbing(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\\', '%', '&']) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['\\', '%', '&']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (c, len) = decode_escape(rest).unwrap_or_else(|| (rest.as_bytes()[0] as char, 1));
        out.push(c);
        rest = &rest[len..];
    }
    out.push_str(rest);
    out.into()
}

/// The byte two hex digits spell.
fn hex_byte(digits: &str) -> Option<u8> {
    (digits.len() == 2 && digits.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u8::from_str_radix(digits, 16).expect("two hex digits"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_paths_are_stored_encoded() {
        assert_eq!(path_for_log("/api/v1/me\0x"), "/api/v1/me%00x");
        assert_eq!(path_for_log("/a\nb\u{85}/é"), "/a%0Ab%C2%85/é");
        assert_eq!(path_for_log("/api/v1/users/0193a5c4"), "/api/v1/users/0193a5c4");
        assert_eq!(path_for_log("/api/v1/me?token=x#y"), "/api/v1/me%3Ftoken=x%23y");
        // What would reorder or hide part of the path on screen.
        assert_eq!(path_for_log("/u/\u{202E}txt\u{200B}\u{2028}"), "/u/%E2%80%AEtxt%E2%80%8B%E2%80%A8");
        let long = format!("/{}", "é".repeat(3000));
        let stored = path_for_log(&long);
        assert!(
            stored.ends_with(&format!("…[truncated {} bytes]", (3001 - MAX_PATH_CHARS) * 2)),
            "{}",
            &stored[stored.len() - 30..]
        );
        assert_eq!(stored.chars().count(), MAX_PATH_CHARS + "…[truncated 1906 bytes]".chars().count());
    }
    use serde_json::json;

    #[test]
    fn sensitive_names_in_any_case() {
        for name in [
            "password",
            "new_Password",
            "client_secret",
            "access_token",
            "Authorization",
            "set-cookie",
            "api_key",
            "X-ApiKey",
            "api-key",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["name", "email", "reason", "duration_hours", "api"] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn letters_that_case_fold_to_ascii_spell_names_too() {
        for name in ["to\u{212A}en", "\u{17F}ecret", "pa\u{DF}word", "PA\u{1E9E}WORD", "ap\u{131}key", "AP\u{130}_KEY"]
        {
            assert!(is_sensitive(name), "{name}");
        }
        let json = serde_json::from_str::<Value>("{\"to\\u212aen\": \"S1\", \"\\u017fecret\": \"S2\"}").unwrap();
        assert_eq!(redact_json(&json), json!({"to\u{212A}en": REDACTED, "\u{17F}ecret": REDACTED}));
        assert_eq!(redact_query("pas%C5%BFword=S3&q=1"), "pas%C5%BFword=[REDACTED]&q=1");
        let scrubbed = scrub_text("note: x\npa\u{DF}word: S4\n");
        assert!(!scrubbed.contains("S4"), "{scrubbed}");
    }

    #[test]
    fn full_width_letters_and_hidden_controls_spell_names_too() {
        for name in ["\u{FF50}assword", "\u{FF33}\u{FF25}\u{FF23}\u{FF32}\u{FF25}\u{FF34}", "api\u{FF3F}key"] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["pass\0word", "pass\u{7}word", "to\u{1F}ken", "cook\u{7F}ie"] {
            assert!(mentions_secret(name), "{name:?}");
        }
        let json = json!({"pass\0word": "S1", "\u{FF53}ecret": "S2", "name": "ok"});
        // A control ends the name as stored; a full-width letter is a letter.
        assert_eq!(redact_json(&json), json!({"pass[REDACTED]": REDACTED, "\u{FF53}ecret": REDACTED, "name": "ok"}));
        assert_eq!(
            redact_query("pass%00word=S3&%EF%BD%90assword=S4"),
            "pass[REDACTED]=[REDACTED]&%EF%BD%90assword=[REDACTED]"
        );
        let scrubbed = scrub_text("note: x\n\u{FF50}assword: S5\n");
        assert!(!scrubbed.contains("S5"), "{scrubbed}");
        // Line breaks still separate a name from what follows.
        assert!(!mentions_secret("pass\nword"));
    }

    #[test]
    fn text_is_stored_as_sent_around_what_is_hidden() {
        // Read with lookalikes folded and escapes decoded, but every byte
        // kept is the one sent: nothing spelled differently in the log.
        let text = "Straße 5, K\\u0041=%41 ıſK 100%\npaßword: S1\nnote: Groß";
        let stored = scrub_text(text);
        assert_eq!(stored, format!("Straße 5, K\\u0041=%41 ıſK 100%\npaßword: {REDACTED}\nnote: Groß"));
        let stored = scrub_text("ßecret = S2\n\\u0070assword: \"S3\" ẞ");
        assert_eq!(stored, format!("ßecret = {REDACTED}\n\\u0070assword: \"{REDACTED}\" ẞ"));
    }

    #[test]
    fn objects_and_arrays_in_broken_json_are_hidden_whole() {
        // Valid-looking JSON that serde refuses (a number out of range), as
        // text (multipart headers are): the value spans lines and holds brackets.
        let body = "{\"password\":[\n\"S1\", {\"a\": \"]\"}\n, \"S2\"],\n\"secret\": {\"v\":\n\"S3\"}, \"n\": 1e999}";
        let stored = scrub_text(body);
        assert!(!stored.contains('S'), "{stored}");
        assert!(stored.ends_with("\"n\": 1e999}"), "{stored}");
        // Never closed: hidden to the end.
        let stored = scrub_text("{\"token\": {\"a\": [\"S4\"");
        assert!(!stored.contains("S4"), "{stored}");
    }

    #[test]
    fn json_is_redacted_at_any_depth() {
        let body = json!({
            "email": "a@b.example",
            "password": "hunter2",
            "nested": {"items": [{"client_secret": "s3", "keep": 1}, {"deeper": {"RefreshToken": {"value": "t"}}}]},
            "list": [["x", {"api_key": 7}]]
        });
        assert_eq!(
            redact_json(&body),
            json!({
                "email": "a@b.example",
                "password": REDACTED,
                "nested": {"items": [{"client_secret": REDACTED, "keep": 1}, {"deeper": {"RefreshToken": REDACTED}}]},
                "list": [["x", {"api_key": REDACTED}]]
            })
        );
    }

    #[test]
    fn queries_and_forms_are_redacted_by_parameter_name() {
        assert_eq!(redact_query("q=ada&access_token=abc&limit=5"), "q=ada&access_token=[REDACTED]&limit=5");
        assert_eq!(redact_query("pass%77ord=x"), "pass%77ord=[REDACTED]");
        assert_eq!(redact_query("flag&Api_Key="), "flag&Api_Key=[REDACTED]");
        let form = redact_body(b"grant_type=x&subject_token=abc&password=p", Some("application/x-www-form-urlencoded"))
            .unwrap();
        assert_eq!(form, "grant_type=x&subject_token=[REDACTED]&password=[REDACTED]");
    }

    #[test]
    fn values_that_name_a_secret_are_withheld_whole() {
        // In JSON: escaped keys, and strings holding XML, YAML or a query.
        let body = json!({
            "pass%77ord": "V1SECRET",
            "note": "<password><![CDATA[V2SECRET]]></password>",
            "yaml": "api_key: |\n  V3SECRET",
            "next": "/cb?access_token=V4SECRET",
            "name": "Ada",
        });
        let stored = redact_json(&body);
        assert!(!stored.to_string().contains("SECRET"), "{stored}");
        assert_eq!(stored["name"], "Ada");
        // Name/value pairs naming a secret hide the value.
        let pairs = json!([{"name": "password", "value": "V8SECRET"}, {"key": "api_key", "values": ["V9SECRET"]}, {"name": "email", "value": "a@b.example"}]);
        let stored = redact_json(&pairs);
        assert!(!stored.to_string().contains("SECRET"), "{stored}");
        assert_eq!(stored[2]["value"], "a@b.example");
        // A value merely containing the word is kept.
        let plain = json!({"title": "Secretary", "q": "password reset"});
        assert_eq!(redact_json(&plain), plain);
        assert_eq!(redact_query("q=password+reset&title=Secretary"), "q=password+reset&title=Secretary");
        // In queries and forms, whatever the parameter is called.
        assert_eq!(redact_query("next=%2Fcb%3Faccess_token%3DV5SECRET&q=ada"), "next=[REDACTED]&q=ada");
        assert_eq!(redact_query("filter=%7B%22password%22%3A%22V6%22%7D"), "filter=[REDACTED]");
        // In multipart: names split (RFC 2231) or encoded (RFC 2047), encoded content.
        for headers in [
            "Content-Disposition: form-data; name*0=\"pass\"; name*1=\"word\"",
            "Content-Disposition: form-data; name=\"=?UTF-8?B?cGFzc3dvcmQ=?=\"",
            "Content-Disposition: form-data; name=\"a\"\r\nContent-Transfer-Encoding: base64",
        ] {
            let body = format!("--b\r\n{headers}\r\n\r\nV7SECRET\r\n--b--\r\n");
            let stored = redact_body(body.as_bytes(), Some("multipart/form-data; boundary=b")).unwrap();
            assert!(!stored.contains("V7SECRET"), "{stored}");
        }
    }

    #[test]
    fn broken_json_and_text_naming_a_secret_are_not_stored() {
        for (body, content_type) in [
            (&br#"{"password": "hunter2", "name": "x""#[..], "application/json"),
            (b"token=abc123; secret: s3cr3t\nplain", "text/plain"),
            (b"<password><![CDATA[hunter2]]></password>", "application/xml"),
            (b"password: |\n  hunter2", "application/yaml"),
            (b"user,password\nada,hunter2", "text/csv"),
            (b"pass\\167ord: hunter2", "text/plain"),
            ("pass\u{200B}word: hunter2".as_bytes(), "text/plain"),
            (b"PASS%252577ORD=hunter2", "text/plain"),
        ] {
            let stored = redact_body(body, Some(content_type)).unwrap();
            assert_eq!(stored, format!("[text body of {} bytes not stored: it names a secret]", body.len()));
        }
        // Text that names none is stored as sent.
        let plain = "<note>call Ada back</note>\n100% done";
        assert_eq!(redact_body(plain.as_bytes(), Some("text/plain")).unwrap(), plain);
    }

    #[test]
    fn text_values_are_hidden_to_the_end_of_their_line() {
        let stored = scrub_text("Authorization: Bearer TXTSECRET1\npassword: correct horse TXTSECRET3\r\nnote: kept");
        for secret in ["TXTSECRET1", "Bearer", "horse", "TXTSECRET3"] {
            assert!(!stored.contains(secret), "{secret} kept: {stored}");
        }
        assert!(stored.ends_with("note: kept"), "{stored}");
        let xml = scrub_text("<login><user>ada</user><password>XMLSECRET</password></login>");
        assert_eq!(xml, "<login><user>ada</user><password>[REDACTED]</password></login>");
    }

    #[test]
    fn escaped_names_are_recognised() {
        for body in
            [r#"{"pass\u0077ord": "ESCSECRET1", "#, r#"{"api\u005Fkey": ESCSECRET1, "#, "pass%77ord: ESCSECRET1"]
        {
            let stored = redact_body(body.as_bytes(), Some("application/json")).unwrap();
            assert!(!stored.contains("ESCSECRET1"), "{body:?} stored as {stored}");
        }
        // Escapes that spell no name character stay as they were.
        assert_eq!(scrub_text(r#"{"a": "\u0022 100%"}"#), r#"{"a": "\u0022 100%"}"#);
        // Other escape styles, and encoding twice, spell names too.
        for body in [
            r"pass\x77ord=ESC2SECRET",
            "pass&#119;ord=ESC2SECRET",
            "pass&#x77;ord: ESC2SECRET",
            "PASS%2577ORD=ESC2SECRET",
            "tok&#101;n=ESC2SECRET",
        ] {
            let stored = scrub_text(body);
            assert!(!stored.contains("ESC2SECRET"), "{body:?} stored as {stored}");
            assert!(stored.starts_with(&body[..4]), "{body:?} stored as {stored}");
            assert!(mentions_secret(body), "{body:?}");
        }
        assert_eq!(scrub_text("Q&A: 100% &#8364; &amp;"), "Q&A: 100% &#8364; &amp;");
    }

    #[test]
    fn wide_spaces_between_name_and_value_are_spaces() {
        for body in ["\"password\"\u{a0}:\"WIDE3SECRET\"", "password\u{3000}=WIDE3SECRET", "token\u{2003}: WIDE3SECRET"]
        {
            let stored = scrub_text(body);
            assert!(!stored.contains("WIDE3SECRET"), "{body:?} stored as {stored}");
            // Stored as sent around what is hidden.
            assert!(stored.contains(['\u{a0}', '\u{3000}', '\u{2003}']), "{body:?} stored as {stored}");
        }
    }

    #[test]
    fn secrets_hidden_inside_strings_and_odd_separators_are_found() {
        let nested = redact_body(br#"{"data":"{\"password\":\"NESTED17SECRET\"}","note":"plain 100%"}"#, None).unwrap();
        assert!(!nested.contains("NESTED17SECRET") && nested.contains("plain 100%"), "{nested}");
        let form = "application/x-www-form-urlencoded";
        for body in ["pass%2577ord=DBL18SECRET&a=1", "a=1;password=SEMI19SECRET", "x=1&tok%65n=PCT20SECRET"] {
            let stored = redact_body(body.as_bytes(), Some(form)).unwrap();
            assert!(!stored.contains("SECRET"), "{body} stored as {stored}");
        }
        assert_eq!(redact_query("a=1;password=x;b=2&c=3"), "a=1;password=[REDACTED];b=2&c=3");
        // A name carrying the value itself (after an encoded `=`, a space, a
        // colon) keeps only its name.
        assert_eq!(redact_query("password%3DKEY22SECRET&a=1"), "password[REDACTED]=[REDACTED]&a=1");
        assert_eq!(redact_query("pass%77ord%253AKEY22SECRET=x"), "pass%77ord[REDACTED]=[REDACTED]");
        assert_eq!(redact_query("user[password]=x&X-Api-Key=y"), "user[password]=[REDACTED]&X-Api-Key=[REDACTED]");
        assert_eq!(
            redact_query("authorization:Bearer%20KEY23SECRET&password%20KEY24SECRET&token+KEY25SECRET=1"),
            "authorization[REDACTED]=[REDACTED]&password[REDACTED]=[REDACTED]&token[REDACTED]=[REDACTED]"
        );
        assert_eq!(redact_query("%3Apassword=x"), "[REDACTED]=[REDACTED]");
        let json = redact_json(&json!({"password: KEY26SECRET": true, "Set-Cookie": "x", "ｐａｓｓｗｏｒｄ": "y"}));
        assert_eq!(
            json,
            json!({"password[REDACTED]": "[REDACTED]", "Set-Cookie": "[REDACTED]", "ｐａｓｓｗｏｒｄ": "[REDACTED]"})
        );
        let text = redact_body(b"see token%3DPCT21SECRET here", Some("text/plain")).unwrap();
        assert!(!text.contains("PCT21SECRET"), "{text}");
    }

    #[test]
    fn binary_and_utf16_bodies_are_not_stored() {
        let utf16: Vec<u8> = r#"{"password": "U16SECRET"}"#.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(
            redact_body(&utf16, Some("application/json")).unwrap(),
            format!("[binary body of {} bytes not stored]", utf16.len())
        );
        assert_eq!(
            redact_body(b"GIF89a\0\0secret", Some("image/gif")).unwrap(),
            "[binary body of 14 bytes not stored]"
        );
    }

    #[test]
    fn multipart_parts_named_like_secrets_are_hidden() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nada\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nMPSECRET1\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\ntoken=MPSECRET2\r\n--XyZ--\r\n";
        let stored = redact_body(body.as_bytes(), Some("multipart/form-data; boundary=XyZ")).unwrap();
        assert!(!stored.contains("MPSECRET1") && !stored.contains("MPSECRET2"), "{stored}");
        assert!(stored.contains("ada") && stored.contains("name=\"password\"\r\n\r\n[REDACTED]"), "{stored}");
        // A wrong boundary, or a body cut short: nothing of it is stored.
        for (body, content_type) in
            [(body, "multipart/form-data; boundary=other"), (&body[..60], "multipart/form-data")]
        {
            let stored = redact_body(body.as_bytes(), Some(content_type)).unwrap();
            assert!(stored.starts_with("[multipart body of") && !stored.contains("MPSECRET"), "{stored}");
        }
        // Whatever follows the closing delimiter is not stored.
        let trailer = "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--B--\r\n\
                       Content-Disposition: form-data; name=\"password\"\r\n\r\nEPISECRET\r\n";
        let stored = redact_body(trailer.as_bytes(), Some("multipart/form-data; boundary=B")).unwrap();
        assert!(stored.ends_with("--B--\r\n[epilogue of 62 bytes not stored]"), "{stored}");
        let closed = redact_body(
            b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--B--\r\n",
            Some("multipart/form-data; boundary=B"),
        )
        .unwrap();
        assert!(closed.ends_with("x\r\n--B--\r\n"), "{closed}");
        // A part's own headers are scrubbed like any text.
        let body = "--B\r\nContent-Disposition: form-data; name=\"a\"\r\nAuthorization: Bearer HDRSECRET\r\n\r\nx\r\n--B--\r\n";
        for content_type in [Some("multipart/form-data; boundary=B"), Some("text/plain")] {
            let stored = redact_body(body.as_bytes(), content_type).unwrap();
            assert!(!stored.contains("HDRSECRET") && stored.contains("Authorization: [REDACTED]"), "{stored}");
        }
        // However the part's name is spelt, under whatever content type.
        for disposition in [
            "form-data; Name=\"password\"",
            "form-data; NAME = \"password\"",
            "form-data; name*=UTF-8''pass%77ord",
            "form-data; name=\"user\"; filename=\"api_key.txt\"",
        ] {
            let body = format!("--B\r\nContent-Disposition: {disposition}\r\n\r\nMPSECRET3\r\n--B--\r\n");
            for content_type in
                [Some("multipart/form-data; boundary=B"), Some("multipart/mixed"), Some("text/plain"), None]
            {
                let stored = redact_body(body.as_bytes(), content_type).unwrap();
                assert!(!stored.contains("MPSECRET3"), "{disposition} as {content_type:?}: {stored}");
            }
        }
    }

    #[test]
    fn xml_elements_with_attributes_are_hidden() {
        let stored = scrub_text("<login><password kind=\"otp\">XMLSECRET</password><user>ada</user></login>");
        assert!(!stored.contains("XMLSECRET") && stored.contains("<user>ada</user>"), "{stored}");
        // Attributes of a secret element are hidden too, self-closing or not.
        for xml in ["<password kind=\"otp\" token=\"ATTRSECRET\">X</password>", "<token value=\"ATTRSECRET\"/><a>b</a>"]
        {
            let stored = scrub_text(xml);
            assert!(!stored.contains("ATTRSECRET"), "{stored}");
        }
        // A name followed by anything but a separator may be followed by its
        // secret (`the password is …`, a comment): the rest of its line goes.
        assert_eq!(scrub_text("<note>token rotation</note>\n<a>1</a>"), "<note>token [REDACTED]\n<a>1</a>");
        let commented = r#"{"name":"x", "password" /*c*/ : "CMT4SECRET"}"#;
        assert_eq!(scrub_text(commented), r#"{"name":"x", "password" [REDACTED]"#);
        assert_eq!(scrub_text("my password is PROSE5SECRET\nthanks"), "my password [REDACTED]\nthanks");
        // At the end of its line a name hides nothing.
        assert_eq!(scrub_text("reset my password\nplease"), "reset my password\nplease");
        assert_eq!(scrub_text("password\n= NEXTLINE6SECRET"), "password\n= [REDACTED]");
    }

    #[test]
    fn quoted_secrets_are_hidden_whole() {
        for body in [
            r#"{"password":"a,b;c}d",}"#,
            r#"{"password" : "has \"escaped\" quotes, commas",}"#,
            "{\"password\"\n\t:\n \"after newlines\",}",
            r#"{"api_key": 'single, quoted' ,}"#,
            r#"{"password": "never closed, runs to the end"#,
        ] {
            let stored = scrub_text(body);
            for fragment in
                ["a,b", "c}d", "escaped", "commas", "after newlines", "single", "quoted", "never closed", "runs to"]
            {
                assert!(!stored.contains(fragment), "{fragment:?} kept from {body:?}: {stored}");
            }
            assert!(stored.contains(REDACTED), "{stored}");
        }
    }

    #[test]
    fn odd_encodings_do_not_panic_or_leak() {
        assert_eq!(redact_query("%€=x&%E2%82%AC=y&%=z&%4"), "%€=x&%E2%82%AC=y&%=z&%4");
        assert_eq!(redact_query("new+password=hunter2"), "new[REDACTED]=[REDACTED]");
        assert_eq!(
            redact_query("pas%C5%BFword%E2%82=x&token%=y"),
            "pas%C5%BFword[REDACTED]=[REDACTED]&token[REDACTED]=[REDACTED]"
        );
        let upper = redact_body(b"password=hunter2", Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8")).unwrap();
        assert!(!upper.contains("hunter2"), "{upper}");
    }

    #[test]
    fn scrubbing_is_linear() {
        // A megabyte of near-misses: quadratic scanning would take minutes.
        let body = "tokentoken".repeat(100_000);
        let started = std::time::Instant::now();
        let stored = scrub_text(&body);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(!stored.is_empty());
        // Escapes within escapes are decoded a few times, not without end.
        let nested = "%25".repeat(20_000) + "77";
        let started = std::time::Instant::now();
        assert!(!mentions_secret(&nested));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn large_bodies_are_truncated_with_a_marker() {
        let big = "é".repeat(10_000);
        let stored = redact_body(big.as_bytes(), Some("text/plain")).unwrap();
        assert!(stored.len() < MAX_BODY_BYTES + 40);
        assert!(stored.ends_with(&format!("…[truncated {} bytes]", big.len() - MAX_BODY_BYTES)));
        assert_eq!(redact_body(b"", None), None);
    }
}
