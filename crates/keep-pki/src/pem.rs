//! Forgiving PEM reading and canonical PEM writing.
//!
//! Certificates reach keep through YAML agent configs, JSON values, environment variables,
//! copy-paste from web pages and Windows editors, so the reader accepts every mangling those
//! channels are known to apply (CRLF or CR line ends, indentation, trailing blanks, blank lines,
//! literal `\n` escapes, YAML `>` folding onto one line, text around the blocks, UTF-16 from
//! PowerShell redirects). What it cannot read it rejects with a one-line message that names the
//! source, the line of the *original* input (so the user can open the file there), the problem
//! and a fix.
//!
//! We do not use `rustls-pki-types`' PEM parser: it silently finds nothing in indented or folded
//! input and its errors print raw bytes.
//!
//! Writing is always canonical RFC 7468: LF line ends, 64-column base64, a final newline.

use std::fmt;
use std::path::PathBuf;

use zeroize::Zeroizing;

/// Where PEM text came from, so that an error can point the user at it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A file on disk, shown as given by the user (not canonicalised).
    File(PathBuf),
    /// A field of a config file, by its dotted path, e.g. `mtls.cert_pem`.
    Field(String),
    /// Standard input (`-` as a file name).
    Stdin,
    /// Anything else (an HTTP response, a vault entry …), shown verbatim.
    Other(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Field(name) => write!(f, "config field `{name}`"),
            Source::Stdin => f.write_str("standard input"),
            Source::Other(text) => f.write_str(text),
        }
    }
}

/// One decoded PEM block.
#[derive(Clone)]
pub struct PemBlock {
    /// The label between `BEGIN` and the dashes, e.g. `CERTIFICATE`, `ENCRYPTED PRIVATE KEY`.
    ///
    /// [`read_certificates`] normalises `X509 CERTIFICATE` and `TRUSTED CERTIFICATE` to
    /// `CERTIFICATE`, because the bytes it returns are then a plain certificate.
    pub label: String,
    /// The decoded bytes. Zeroized on drop because a block may hold a private key.
    pub der: Zeroizing<Vec<u8>>,
    /// 1-based line of the BEGIN marker in the original input (0 for raw DER input).
    pub line: usize,
    /// RFC 1421 headers such as `Proc-Type` and `DEK-Info` (legacy encrypted keys), in order.
    pub headers: Vec<(String, String)>,
}

// By hand, so that key material never reaches a log through `{:?}`.
impl fmt::Debug for PemBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemBlock")
            .field("label", &self.label)
            .field("line", &self.line)
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

/// A PEM input that cannot be read.
///
/// `Display` is one line: the source, the line, the problem and a fix, e.g.
/// `file vault.crt, line 7: invalid base64 character '!' at column 12; fix: …`.
///
/// `std::error::Error` is implemented by hand rather than with `thiserror`: thiserror treats a
/// field named `source` as the error's cause, and ours is the *input's origin*, not a cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemError {
    /// Where the input came from.
    pub source: Source,
    /// 1-based line of the original input the problem is on, when there is one.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: PemErrorKind,
}

impl PemError {
    fn new(source: &Source, line: Option<usize>, kind: PemErrorKind) -> Self {
        PemError {
            source: source.clone(),
            line,
            kind,
        }
    }
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        write!(f, ": {}; fix: {}", self.kind, self.kind.fix())
    }
}

impl std::error::Error for PemError {}

/// What is wrong with a PEM input. `Display` gives the problem, [`PemErrorKind::fix`] the remedy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemErrorKind {
    /// The input is empty or only whitespace.
    EmptyInput,
    /// No `-----BEGIN …-----` marker anywhere. `looks_like_der` when the input starts like a DER
    /// SEQUENCE (byte 0x30), i.e. it is probably binary DER rather than PEM.
    NoPemFound {
        /// The first byte is 0x30, as in a DER certificate or key.
        looks_like_der: bool,
    },
    /// A BEGIN marker whose block never ends (cut-off input, or a second BEGIN comes first).
    MissingEnd {
        /// The label of the unterminated block.
        label: String,
    },
    /// An END marker with no BEGIN before it (the top of the block was lost).
    MissingBegin {
        /// The label of the END marker.
        label: String,
    },
    /// The END label differs from the BEGIN label.
    MismatchedEnd {
        /// The label of the BEGIN marker.
        begin: String,
        /// The label of the END marker.
        end: String,
    },
    /// A BEGIN or END line that is not `-----BEGIN LABEL-----` / `-----END LABEL-----`.
    MalformedMarker {
        /// What is wrong with it, in words.
        problem: String,
    },
    /// A character that is not base64 between the BEGIN and END lines.
    InvalidBase64 {
        /// The offending character (`=` when padding is followed by more data).
        ch: char,
        /// 1-based column of the character in the original line, counted in characters.
        column: usize,
    },
    /// Nothing between the BEGIN and END lines.
    EmptyBody {
        /// The label of the empty block.
        label: String,
    },
    /// The base64 body has a length that no byte string encodes to (a character was lost or
    /// added, or there is too much `=` padding).
    BadLength,
    /// A block of the wrong kind, e.g. a private key given where a certificate is expected.
    UnexpectedLabel {
        /// The label that was wanted.
        expected: String,
        /// The first label that was found instead.
        found: String,
    },
    /// The block decodes, but its bytes are not a valid object of its kind (typically a
    /// truncated body).
    InvalidDer {
        /// The label of the block (or of the kind expected, for raw DER input).
        label: String,
        /// What the DER parser objected to, in words.
        problem: String,
    },
}

impl PemErrorKind {
    /// A one-line remedy for the user.
    pub fn fix(&self) -> String {
        match self {
            PemErrorKind::EmptyInput => {
                "check that the file or config field actually holds the PEM text".to_string()
            }
            PemErrorKind::NoPemFound {
                looks_like_der: true,
            } => "convert it to PEM, e.g. \
                  `openssl x509 -inform DER -in FILE -out FILE.pem` for a certificate"
                .to_string(),
            PemErrorKind::NoPemFound {
                looks_like_der: false,
            } => "give PEM text: a block from a line like -----BEGIN CERTIFICATE----- to its \
                  matching -----END CERTIFICATE----- line"
                .to_string(),
            PemErrorKind::MissingEnd { label } => format!(
                "the block was cut off; copy it again completely, down to its \
                 -----END {label}----- line"
            ),
            PemErrorKind::MissingBegin { label } => format!(
                "the top of the block was lost; copy it again completely, from its \
                 -----BEGIN {label}----- line"
            ),
            PemErrorKind::MismatchedEnd { begin, .. } => format!(
                "two blocks were spliced together; copy each block whole, the END line must \
                 read -----END {begin}-----"
            ),
            PemErrorKind::MalformedMarker { .. } => "a marker line reads -----BEGIN LABEL----- \
                 or -----END LABEL-----: five dashes, BEGIN or END, the label, five dashes"
                .to_string(),
            PemErrorKind::InvalidBase64 { ch: '=', .. } => "the body was spliced or corrupted; \
                 re-copy the PEM exactly, '=' may appear only at the very end of the base64"
                .to_string(),
            PemErrorKind::InvalidBase64 { .. } => "re-copy the PEM exactly, only A-Z a-z 0-9 + / \
                 = may appear between the BEGIN and END lines"
                .to_string(),
            PemErrorKind::EmptyBody { .. } => {
                "copy the block again, including the base64 lines between BEGIN and END".to_string()
            }
            PemErrorKind::BadLength => {
                "a character was lost or added; re-copy the block exactly".to_string()
            }
            PemErrorKind::UnexpectedLabel { expected, found } => {
                if found.contains("PRIVATE KEY") {
                    format!(
                        "this is a private key; give the {expected} file here (usually .crt) \
                         and the key where a key is asked for"
                    )
                } else if found.contains("CERTIFICATE REQUEST") {
                    format!(
                        "this is a certificate request (CSR); sign it first \
                         (`keep certificate sign`) and give the resulting {expected}"
                    )
                } else if found == "PKCS7" {
                    "extract the certificates first: `openssl pkcs7 -print_certs -in FILE`"
                        .to_string()
                } else {
                    format!("give input holding a -----BEGIN {expected}----- block")
                }
            }
            PemErrorKind::InvalidDer { .. } => "the data is truncated or corrupted; copy it \
                 again completely (for PEM, every line from BEGIN to END)"
                .to_string(),
        }
    }
}

impl fmt::Display for PemErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemErrorKind::EmptyInput => f.write_str("the input is empty"),
            PemErrorKind::NoPemFound {
                looks_like_der: true,
            } => f.write_str("no PEM block found; the input looks like binary DER"),
            PemErrorKind::NoPemFound {
                looks_like_der: false,
            } => f.write_str("no PEM block found (no -----BEGIN line)"),
            PemErrorKind::MissingEnd { label } => {
                write!(f, "-----BEGIN {label}----- has no matching END line")
            }
            PemErrorKind::MissingBegin { label } => {
                write!(f, "-----END {label}----- has no BEGIN line before it")
            }
            PemErrorKind::MismatchedEnd { begin, end } => write!(
                f,
                "mismatched END: block begun as {begin} ends with -----END {end}-----"
            ),
            PemErrorKind::MalformedMarker { problem } => write!(f, "malformed marker: {problem}"),
            PemErrorKind::InvalidBase64 { ch: '=', column } => write!(
                f,
                "invalid base64: padding '=' at column {column} is followed by more data"
            ),
            PemErrorKind::InvalidBase64 { ch, column } => write!(
                f,
                "invalid base64 character {} at column {column}",
                describe_char(*ch)
            ),
            PemErrorKind::EmptyBody { label } => {
                write!(
                    f,
                    "the {label} block is empty (no base64 between BEGIN and END)"
                )
            }
            PemErrorKind::BadLength => f.write_str(
                "the base64 body has an impossible length (it ends in the middle of a group)",
            ),
            PemErrorKind::UnexpectedLabel { expected, found } => {
                write!(f, "expected a {expected} block but found {found}")
            }
            PemErrorKind::InvalidDer { label, problem } => {
                write!(f, "the {label} data is not valid DER: {problem}")
            }
        }
    }
}

/// Shows a character without letting control or invisible characters garble the one-line
/// message: printable ASCII as `'!'`, anything else as `U+00A0`.
fn describe_char(ch: char) -> String {
    if ch.is_ascii_graphic() {
        format!("'{ch}'")
    } else {
        format!("U+{:04X}", u32::from(ch))
    }
}

/// Reads every PEM block of `input`, in order, forgivingly (see the module docs).
///
/// Only the PEM layer is checked: a block whose base64 decodes is returned even if its bytes
/// are not valid DER. Use [`read_certificates`] or [`read_crls`] when the kind is known.
/// Fails when there is no block at all.
pub fn parse(input: &[u8], source: &Source) -> Result<Vec<PemBlock>, PemError> {
    let utf16 = utf16_to_utf8(input);
    let text: &[u8] = utf16.as_ref().map_or(input, |owned| owned.as_slice());

    if text.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(PemError::new(source, None, PemErrorKind::EmptyInput));
    }

    let mut blocks = Vec::new();
    let mut open: Option<BlockBuilder> = None;
    for seg in segments(text) {
        let mut i = 0;
        loop {
            if let Some(builder) = open.as_mut() {
                match scan_body(builder, &seg, i, source)? {
                    None => break,
                    Some(after_end) => {
                        if let Some(done) = open.take() {
                            blocks.push(done.finish(source)?);
                        }
                        i = after_end;
                    }
                }
            } else {
                match next_marker(&seg, i, source)? {
                    None => break,
                    Some((label, after_begin)) => {
                        open = Some(BlockBuilder::new(label, seg.line, text.len()));
                        i = after_begin;
                    }
                }
            }
        }
    }
    if let Some(unfinished) = open {
        return Err(PemError::new(
            source,
            Some(unfinished.line),
            PemErrorKind::MissingEnd {
                label: unfinished.label,
            },
        ));
    }
    if blocks.is_empty() {
        return Err(PemError::new(
            source,
            None,
            PemErrorKind::NoPemFound {
                looks_like_der: input.first() == Some(&0x30),
            },
        ));
    }
    Ok(blocks)
}

/// Writes one canonical RFC 7468 block: `-----BEGIN L-----`, 64-column base64 lines, `-----END
/// L-----`, LF line ends and a final newline.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64_len = der.len().div_ceil(3) * 4;
    let body_lines = b64_len.div_ceil(64);
    // Exact capacity: the string may hold a key, and growing it would leave copies behind.
    let mut out = String::with_capacity(
        2 * label.len() + "-----BEGIN -----\n-----END -----\n".len() + b64_len + body_lines,
    );
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let mut column = 0;
    for chunk in der.chunks(3) {
        let b0 = chunk.first().copied().unwrap_or(0);
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let quad = [
            sextet_char(b0 >> 2),
            sextet_char(((b0 & 0x03) << 4) | (b1 >> 4)),
            if chunk.len() > 1 {
                sextet_char(((b1 & 0x0f) << 2) | (b2 >> 6))
            } else {
                '='
            },
            if chunk.len() > 2 {
                sextet_char(b2 & 0x3f)
            } else {
                '='
            },
        ];
        for c in quad {
            out.push(c);
            column += 1;
            if column == 64 {
                out.push('\n');
                column = 0;
            }
        }
    }
    if column != 0 {
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Reads certificates: every `CERTIFICATE` block (also `X509 CERTIFICATE` and OpenSSL's
/// `TRUSTED CERTIFICATE`, whose trust data is dropped), each checked to be exactly one X.509
/// certificate so that a truncated body is reported with its line rather than failing later.
///
/// Blocks of other kinds (a key in the same file, say) are skipped; if there is no certificate
/// but other blocks, the error is [`PemErrorKind::UnexpectedLabel`]. Raw DER input (as `step`
/// accepts) is returned as one block with line 0.
pub fn read_certificates(input: &[u8], source: &Source) -> Result<Vec<PemBlock>, PemError> {
    read_kind(input, source, &CERTIFICATE_KIND)
}

/// Reads certificate revocation lists (`X509 CRL` blocks, or raw DER), each checked to be
/// exactly one CRL; otherwise as [`read_certificates`].
pub fn read_crls(input: &[u8], source: &Source) -> Result<Vec<PemBlock>, PemError> {
    read_kind(input, source, &CRL_KIND)
}

/// What [`read_kind`] looks for.
struct ObjectKind {
    /// The canonical label, used in returned blocks and in messages.
    label: &'static str,
    /// Labels accepted as this kind.
    aliases: &'static [&'static str],
    /// A label whose DER may carry extra data after the object (OpenSSL's trust settings).
    trailing_allowed: Option<&'static str>,
    /// Parses one object and returns how many bytes it used.
    parse: fn(&[u8]) -> Result<usize, String>,
}

const CERTIFICATE_KIND: ObjectKind = ObjectKind {
    label: "CERTIFICATE",
    aliases: &["CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"],
    trailing_allowed: Some("TRUSTED CERTIFICATE"),
    parse: parse_certificate_len,
};

const CRL_KIND: ObjectKind = ObjectKind {
    label: "X509 CRL",
    aliases: &["X509 CRL"],
    trailing_allowed: None,
    parse: parse_crl_len,
};

fn parse_certificate_len(der: &[u8]) -> Result<usize, String> {
    let (rest, _) = x509_parser::parse_x509_certificate(der).map_err(|e| der_problem(der, e))?;
    Ok(der.len().saturating_sub(rest.len()))
}

fn parse_crl_len(der: &[u8]) -> Result<usize, String> {
    let (rest, _) = x509_parser::parse_x509_crl(der).map_err(|e| der_problem(der, e))?;
    Ok(der.len().saturating_sub(rest.len()))
}

/// Words for a DER parse failure. Truncation is by far the common cause (a body cut short in
/// copy-paste) and x509-parser reports it obscurely, so we detect it from the outer length.
fn der_problem(der: &[u8], err: x509_parser::nom::Err<x509_parser::error::X509Error>) -> String {
    if let Some(declared) = outer_der_len(der)
        && declared > der.len()
    {
        return format!(
            "truncated: the outer DER header announces {declared} bytes but only {} are present",
            der.len()
        );
    }
    match err {
        x509_parser::nom::Err::Incomplete(_) => "truncated: the data ends early".to_string(),
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e.to_string(),
    }
}

/// Total length (header + content) that the outermost DER TLV announces, if readable.
fn outer_der_len(der: &[u8]) -> Option<usize> {
    let first = *der.get(1)?;
    if first < 0x80 {
        return Some(2 + usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let bytes = der.get(2..2 + n)?;
    let content = bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    content.checked_add(2 + n)
}

fn read_kind(input: &[u8], source: &Source, kind: &ObjectKind) -> Result<Vec<PemBlock>, PemError> {
    // Raw DER first: PEM never starts with 0x30 ('0'), and step accepts DER files.
    let mut der_problem_text = None;
    if input.first() == Some(&0x30) {
        match (kind.parse)(input) {
            Ok(used) if used == input.len() => {
                return Ok(vec![PemBlock {
                    label: kind.label.to_string(),
                    der: Zeroizing::new(input.to_vec()),
                    line: 0,
                    headers: Vec::new(),
                }]);
            }
            Ok(used) => {
                der_problem_text = Some(format!(
                    "binary input has {} bytes of trailing data after the object",
                    input.len().saturating_sub(used)
                ))
            }
            Err(problem) => der_problem_text = Some(format!("binary input: {problem}")),
        }
    }

    let blocks = match parse(input, source) {
        Ok(blocks) => blocks,
        Err(err) => {
            return Err(match (err.kind, der_problem_text) {
                (PemErrorKind::NoPemFound { .. }, Some(problem)) => PemError::new(
                    source,
                    None,
                    PemErrorKind::InvalidDer {
                        label: kind.label.to_string(),
                        problem,
                    },
                ),
                (other, _) => PemError::new(source, err.line, other),
            });
        }
    };

    let first_other = blocks.first().map(|b| (b.label.clone(), b.line));
    let mut found = Vec::new();
    for mut block in blocks {
        if !kind.aliases.contains(&block.label.as_str()) {
            continue;
        }
        let used = (kind.parse)(&block.der).map_err(|problem| {
            PemError::new(
                source,
                Some(block.line),
                PemErrorKind::InvalidDer {
                    label: block.label.clone(),
                    problem,
                },
            )
        })?;
        if used < block.der.len() {
            if kind.trailing_allowed == Some(block.label.as_str()) {
                // OpenSSL appends its trust settings after the certificate; keep only the
                // certificate, which is what every caller wants.
                block.der.truncate(used);
            } else {
                return Err(PemError::new(
                    source,
                    Some(block.line),
                    PemErrorKind::InvalidDer {
                        label: block.label.clone(),
                        problem: format!(
                            "{} bytes of trailing data after the object",
                            block.der.len().saturating_sub(used)
                        ),
                    },
                ));
            }
        }
        block.label = kind.label.to_string();
        found.push(block);
    }
    if found.is_empty() {
        // `parse` never returns an empty list, so there was at least one block of another kind;
        // point at it.
        let (found, line) = first_other.unwrap_or_default();
        return Err(PemError::new(
            source,
            Some(line),
            PemErrorKind::UnexpectedLabel {
                expected: kind.label.to_string(),
                found,
            },
        ));
    }
    Ok(found)
}

// ---------------------------------------------------------------------------------------------
// Scanner internals.
//
// The input is split into *segments*: physical lines (ended by LF, CRLF or a lone CR), further
// split at literal `\n` / `\r\n` escapes. Every segment remembers its physical line and offset,
// so errors always point into the original input. Markers are found anywhere inside a segment,
// which is what makes JSON values (`"cert": "-----BEGIN …`) and YAML-folded one-liners work.
// ---------------------------------------------------------------------------------------------

const BEGIN: &[u8] = b"-----BEGIN";
const END: &[u8] = b"-----END";
const DASHES: &[u8] = b"-----";
/// Real labels are short; a cap keeps garbage from being echoed into a message.
const MAX_LABEL_LEN: usize = 64;

/// A piece of one physical line of the (UTF-8 or ASCII) text.
struct Segment<'a> {
    /// 1-based physical line number.
    line: usize,
    /// The whole physical line, for column numbers.
    full: &'a [u8],
    /// Offset of this segment in `full`.
    start: usize,
    /// The segment's bytes.
    text: &'a [u8],
}

impl Segment<'_> {
    /// 1-based column, in characters, of byte `i` of this segment within its physical line.
    fn column(&self, i: usize) -> usize {
        let upto = self
            .full
            .get(..self.start.saturating_add(i))
            .unwrap_or(self.full);
        // Count characters, not bytes: a UTF-8 continuation byte does not start a column.
        1 + upto.iter().filter(|b| (**b & 0xC0) != 0x80).count()
    }
}

fn segments(text: &[u8]) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for (index, full) in physical_lines(text).into_iter().enumerate() {
        let line = index + 1;
        let mut start = 0;
        let mut i = 0;
        while i < full.len() {
            if full.get(i) != Some(&b'\\') {
                i += 1;
                continue;
            }
            // One or more backslashes then `n` or `r` (optionally followed by backslashes and
            // `n`): an escaped line break, also when escaped twice (JSON inside JSON). Base64
            // never contains a backslash, so this cannot eat real data.
            let mut j = i;
            while full.get(j) == Some(&b'\\') {
                j += 1;
            }
            match full.get(j) {
                Some(b'n') | Some(b'r') => {
                    let mut after = j + 1;
                    if full.get(j) == Some(&b'r') {
                        let mut k = after;
                        while full.get(k) == Some(&b'\\') {
                            k += 1;
                        }
                        if k > after && full.get(k) == Some(&b'n') {
                            after = k + 1;
                        }
                    }
                    out.push(Segment {
                        line,
                        full,
                        start,
                        text: full.get(start..i).unwrap_or_default(),
                    });
                    start = after;
                    i = after;
                }
                _ => i = j,
            }
        }
        out.push(Segment {
            line,
            full,
            start,
            text: full.get(start..).unwrap_or_default(),
        });
    }
    out
}

/// Splits at LF, CRLF and lone CR (old Mac editors, some copy-paste paths).
fn physical_lines(text: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        if b == b'\n' || b == b'\r' {
            lines.push(text.get(start..i).unwrap_or_default());
            i += if b == b'\r' && text.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            start = i;
        } else {
            i += 1;
        }
    }
    lines.push(text.get(start..).unwrap_or_default());
    lines
}

/// Windows PowerShell's `>` writes UTF-16 with a byte-order mark; decode it so the rest of the
/// scanner sees ASCII. The copy holds the PEM text (maybe a key), hence `Zeroizing`.
fn utf16_to_utf8(input: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let little_endian = match input.get(..2) {
        Some([0xFF, 0xFE]) => true,
        Some([0xFE, 0xFF]) => false,
        _ => return None,
    };
    let units = input
        .get(2..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|pair| {
            let bytes = [
                pair.first().copied().unwrap_or(0),
                pair.get(1).copied().unwrap_or(0),
            ];
            if little_endian {
                u16::from_le_bytes(bytes)
            } else {
                u16::from_be_bytes(bytes)
            }
        });
    // Each UTF-16 unit (2 bytes) becomes at most 3 UTF-8 bytes; sized up front so the buffer
    // never reallocates and leaves an unzeroized copy behind.
    let mut out = Zeroizing::new(Vec::with_capacity(input.len() / 2 * 3 + 4));
    let mut buf = [0u8; 4];
    for ch in char::decode_utf16(units) {
        let ch = ch.unwrap_or(char::REPLACEMENT_CHARACTER);
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    Some(out)
}

fn find_from(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    // `needle` is always one of our non-empty constants, so `windows` cannot panic.
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn starts_at(hay: &[u8], at: usize, needle: &[u8]) -> bool {
    hay.get(at..).is_some_and(|rest| rest.starts_with(needle))
}

fn trim_blanks(bytes: &[u8]) -> &[u8] {
    let is_blank = |b: &u8| b.is_ascii_whitespace();
    let start = bytes
        .iter()
        .position(|b| !is_blank(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |p| p + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Reads the label that starts at `from` (just after `BEGIN`/`END`) up to the closing dashes.
/// Returns the label and the offset after the dashes (and after any extra dashes).
fn read_label(text: &[u8], from: usize, marker: &str) -> Result<(String, usize), String> {
    let Some(close) = find_from(text, from, DASHES) else {
        return Err(format!(
            "the {marker} line does not end with five dashes (-----)"
        ));
    };
    let raw = trim_blanks(text.get(from..close).unwrap_or_default());
    if raw.is_empty() {
        return Err(format!("the {marker} line has no label"));
    }
    if raw.len() > MAX_LABEL_LEN {
        return Err(format!(
            "the {marker} label is longer than {MAX_LABEL_LEN} characters"
        ));
    }
    if let Some(bad) = raw.iter().find(|b| !(b' '..=b'~').contains(*b)) {
        return Err(format!(
            "the {marker} label contains character {}",
            describe_char(char::from(*bad))
        ));
    }
    let mut after = close + DASHES.len();
    // Forgive a sixth dash or more, but not into the next marker: files concatenated without a
    // final newline give `-----END CERTIFICATE----------BEGIN CERTIFICATE-----`.
    while text.get(after) == Some(&b'-')
        && !starts_at(text, after, BEGIN)
        && !starts_at(text, after, END)
    {
        after += 1;
    }
    Ok((String::from_utf8_lossy(raw).into_owned(), after))
}

/// Outside a block: finds the next BEGIN marker in the segment at or after `from`. An END
/// marker seen first is an error (the top of its block is missing).
fn next_marker(
    seg: &Segment<'_>,
    from: usize,
    source: &Source,
) -> Result<Option<(String, usize)>, PemError> {
    let malformed = |problem| {
        PemError::new(
            source,
            Some(seg.line),
            PemErrorKind::MalformedMarker { problem },
        )
    };
    let begin = find_from(seg.text, from, BEGIN);
    let end = find_from(seg.text, from, END);
    match (begin, end) {
        (_, Some(e)) if begin.is_none_or(|b| e < b) => {
            let (label, _) = read_label(seg.text, e + END.len(), "END").map_err(malformed)?;
            Err(PemError::new(
                source,
                Some(seg.line),
                PemErrorKind::MissingBegin { label },
            ))
        }
        (Some(b), _) => {
            let (label, after) =
                read_label(seg.text, b + BEGIN.len(), "BEGIN").map_err(malformed)?;
            Ok(Some((label, after)))
        }
        (None, _) => Ok(None),
    }
}

/// The block being read.
struct BlockBuilder {
    label: String,
    line: usize,
    headers: Vec<(String, String)>,
    /// Headers may still follow (no base64 yet, and no blank line after headers).
    headers_open: bool,
    /// Decoded base64 digits (0..=63), zeroized: they are the key in another form.
    sextets: Zeroizing<Vec<u8>>,
    padding: usize,
    /// Line and column of the first `=`, to report data that follows it.
    padding_at: Option<(usize, usize)>,
}

impl BlockBuilder {
    fn new(label: String, line: usize, input_len: usize) -> Self {
        BlockBuilder {
            label,
            line,
            headers: Vec::new(),
            headers_open: true,
            // The body cannot be longer than the input; reserving that up front means the
            // vector never reallocates and never leaves an unzeroized copy behind.
            sextets: Zeroizing::new(Vec::with_capacity(input_len)),
            padding: 0,
            padding_at: None,
        }
    }

    fn finish(self, source: &Source) -> Result<PemBlock, PemError> {
        let err = |kind| PemError::new(source, Some(self.line), kind);
        let n = self.sextets.len();
        if n == 0 {
            return Err(err(PemErrorKind::EmptyBody {
                label: self.label.clone(),
            }));
        }
        // Missing padding is forgiven (it is often stripped); wrong padding is not.
        if n % 4 == 1
            || self.padding > 2
            || (self.padding > 0 && !(n + self.padding).is_multiple_of(4))
        {
            return Err(err(PemErrorKind::BadLength));
        }
        let mut der = Zeroizing::new(Vec::with_capacity(n / 4 * 3 + 2));
        for quad in self.sextets.chunks(4) {
            let s = |k: usize| quad.get(k).copied().unwrap_or(0);
            der.push((s(0) << 2) | (s(1) >> 4));
            if quad.len() > 2 {
                der.push((s(1) << 4) | (s(2) >> 2));
            }
            if quad.len() > 3 {
                der.push((s(2) << 6) | s(3));
            }
        }
        Ok(PemBlock {
            label: self.label,
            der,
            line: self.line,
            headers: self.headers,
        })
    }
}

/// Inside a block: consumes the segment from `from`. Returns the offset after the END marker
/// when the block ends in this segment, `None` when the segment is used up.
fn scan_body(
    block: &mut BlockBuilder,
    seg: &Segment<'_>,
    from: usize,
    source: &Source,
) -> Result<Option<usize>, PemError> {
    let text = seg.text;
    let at = |line: usize, kind| PemError::new(source, Some(line), kind);

    // RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: …`) come before the base64, one per
    // line, ended by a blank line. Base64 never contains ':', so a colon tells them apart.
    if block.headers_open {
        let rest = trim_blanks(text.get(from..).unwrap_or_default());
        if rest.is_empty() {
            if !block.headers.is_empty() {
                block.headers_open = false;
            }
            return Ok(None);
        }
        if let Some(colon) = rest.iter().position(|b| *b == b':') {
            let name = trim_blanks(rest.get(..colon).unwrap_or_default());
            // Header names are short words like `Proc-Type`; requiring that keeps a corrupted
            // base64 line with a stray ':' from being swallowed as a header.
            let is_token = !name.is_empty()
                && name.len() <= 32
                && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
            if is_token && find_from(rest, 0, DASHES).is_none() {
                let value = trim_blanks(rest.get(colon + 1..).unwrap_or_default());
                block.headers.push((
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                ));
                return Ok(None);
            }
        }
        block.headers_open = false;
    }

    let mut i = from;
    while let Some(&b) = text.get(i) {
        let invalid = |ch: char, i: usize| {
            at(
                seg.line,
                PemErrorKind::InvalidBase64 {
                    ch,
                    column: seg.column(i),
                },
            )
        };
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => {
                if let Some((line, column)) = block.padding_at {
                    return Err(at(line, PemErrorKind::InvalidBase64 { ch: '=', column }));
                }
                block.sextets.push(sextet_value(b));
                i += 1;
            }
            b'=' => {
                if block.padding_at.is_none() {
                    block.padding_at = Some((seg.line, seg.column(i)));
                }
                block.padding += 1;
                i += 1;
            }
            b' ' | b'\t' | 0x0B | 0x0C => i += 1,
            // JSON encoders may escape '/' as `\/`, and a stray `\t` is whitespace.
            b'\\' if text.get(i + 1) == Some(&b'/') => i += 1,
            b'\\' if text.get(i + 1) == Some(&b't') => i += 2,
            // Extra leading dashes are forgiven: look at the last five of the run.
            b'-' if starts_at(text, dash_run_marker(text, i), END) => {
                let m = dash_run_marker(text, i);
                let (label, after) = read_label(text, m + END.len(), "END")
                    .map_err(|problem| at(seg.line, PemErrorKind::MalformedMarker { problem }))?;
                if label != block.label {
                    return Err(at(
                        seg.line,
                        PemErrorKind::MismatchedEnd {
                            begin: block.label.clone(),
                            end: label,
                        },
                    ));
                }
                return Ok(Some(after));
            }
            b'-' if starts_at(text, dash_run_marker(text, i), BEGIN) => {
                return Err(at(
                    block.line,
                    PemErrorKind::MissingEnd {
                        label: block.label.clone(),
                    },
                ));
            }
            b'-' if find_from(text, i, b"END").is_some() => {
                return Err(at(
                    seg.line,
                    PemErrorKind::MalformedMarker {
                        problem: "the END line does not start with five dashes (-----)".into(),
                    },
                ));
            }
            0x80..=0xFF => {
                let ch = decode_char_at(text, i);
                if ch.is_whitespace() {
                    // e.g. a no-break space pasted from a web page.
                    i += ch.len_utf8();
                } else {
                    return Err(invalid(ch, i));
                }
            }
            other => return Err(invalid(char::from(other), i)),
        }
    }
    Ok(None)
}

/// Where a marker would start if the run of dashes at `i` ended one: its last five dashes.
fn dash_run_marker(text: &[u8], i: usize) -> usize {
    let run = text
        .get(i..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| **b == b'-')
        .count();
    i + run.saturating_sub(DASHES.len())
}

/// The character starting at byte `i`, or U+FFFD if the bytes there are not UTF-8.
fn decode_char_at(text: &[u8], i: usize) -> char {
    let bytes = text.get(i..).unwrap_or_default();
    let bytes = bytes.get(..4).unwrap_or(bytes);
    let valid = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or_default())
            .unwrap_or_default(),
    };
    valid.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The value of a base64 digit; only called with bytes of the standard alphabet.
fn sextet_value(b: u8) -> u8 {
    match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        _ => 63,
    }
}

fn sextet_char(v: u8) -> char {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char::from(ALPHABET.get(usize::from(v & 0x3f)).copied().unwrap_or(b'A'))
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A fresh self-signed certificate: (PEM with LF and 64 columns, DER). Generated at test
    /// time so that no key is ever committed and nothing expires in the repository.
    fn cert(name: &str) -> Result<(String, Vec<u8>), Box<dyn std::error::Error>> {
        let key = rcgen::KeyPair::generate()?;
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])?.self_signed(&key)?;
        Ok((cert.pem(), cert.der().to_vec()))
    }

    fn key_pem() -> Result<String, Box<dyn std::error::Error>> {
        Ok(rcgen::KeyPair::generate()?.serialize_pem())
    }

    fn crl() -> Result<(String, Vec<u8>), Box<dyn std::error::Error>> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec!["ca.test".to_string()])?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let issuer = rcgen::Issuer::new(params, &key);
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2024, 2, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)?;
        Ok((crl.pem()?, crl.der().to_vec()))
    }

    fn src() -> Source {
        Source::File(PathBuf::from("vault.crt"))
    }

    /// The base64 lines between the markers of a canonical PEM.
    fn body(pem: &str) -> Vec<&str> {
        pem.lines().filter(|l| !l.starts_with("-----")).collect()
    }

    fn map_lines(pem: &str, f: impl Fn(&str) -> String) -> String {
        pem.lines().map(|l| f(l) + "\n").collect()
    }

    /// A forgiving case's input, expected labels and expected DER of each block.
    type Expected = (Vec<u8>, Vec<&'static str>, Vec<Vec<u8>>);

    fn utf16(text: &str, little_endian: bool) -> Vec<u8> {
        let mut out = if little_endian {
            vec![0xFF, 0xFE]
        } else {
            vec![0xFE, 0xFF]
        };
        for unit in text.encode_utf16() {
            out.extend_from_slice(&if little_endian {
                unit.to_le_bytes()
            } else {
                unit.to_be_bytes()
            });
        }
        out
    }

    #[test]
    fn forgiving_inputs_decode_to_the_clean_der() -> TestResult {
        let (p, d) = cert("a.test")?;
        let (p2, d2) = cert("b.test")?;
        let lines = body(&p);
        let joined = lines.concat();
        let begin = "-----BEGIN CERTIFICATE-----";
        let end = "-----END CERTIFICATE-----";
        let rewrap = |width: usize| -> String {
            let mut s = format!("{begin}\n");
            for chunk in joined.as_bytes().chunks(width) {
                s.push_str(&String::from_utf8_lossy(chunk));
                s.push('\n');
            }
            s + end + "\n"
        };
        let small = encode("DATA", &[1, 2, 3, 4]);
        let key = key_pem()?;
        let key_der = parse(key.as_bytes(), &src())?
            .first()
            .map(|b| b.der.to_vec())
            .ok_or("no key block")?;

        let one = |input: String| (input.into_bytes(), vec!["CERTIFICATE"], vec![d.clone()]);
        let cases: Vec<(&str, Expected)> = vec![
            ("clean", one(p.clone())),
            ("CRLF", one(p.replace('\n', "\r\n"))),
            ("lone CR", one(p.replace('\n', "\r"))),
            (
                "trailing blanks on every line",
                one(map_lines(&p, |l| format!("{l} \t  "))),
            ),
            (
                "indented body",
                one(map_lines(&p, |l| {
                    if l.starts_with("-----") {
                        l.to_string()
                    } else {
                        format!("    {l}")
                    }
                })),
            ),
            (
                "indented markers (YAML block scalar)",
                one(format!(
                    "mtls:\n  cert_pem: |\n{}  key_file: /etc/keep/key.pem\n",
                    map_lines(&p, |l| format!("      {l}"))
                )),
            ),
            ("tab indented", one(map_lines(&p, |l| format!("\t\t{l}")))),
            (
                "CRLF, indentation and trailing blanks together",
                one(map_lines(&p, |l| format!("    {l}  \r"))),
            ),
            (
                "blank lines in body",
                one(format!(
                    "{begin}\n\n{}\n   \n\t\n{}\n\n{end}\n",
                    lines.first().copied().unwrap_or_default(),
                    lines.get(1..).unwrap_or_default().join("\n")
                )),
            ),
            ("no final newline", one(p.trim_end().to_string())),
            (
                "text around the block",
                one(format!(
                    "Bag Attributes\n    localKeyID: 01 00 00 00\nsubject=CN = a.test\n\
                     issuer=CN = a.test\n{p}trailing words: here\n"
                )),
            ),
            (
                "bundle",
                (
                    format!("{p}{p2}").into_bytes(),
                    vec!["CERTIFICATE"; 2],
                    vec![d.clone(), d2.clone()],
                ),
            ),
            (
                "bundle concatenated without newline",
                (
                    format!("{}{p2}", p.trim_end()).into_bytes(),
                    vec!["CERTIFICATE"; 2],
                    vec![d.clone(), d2.clone()],
                ),
            ),
            (
                "bundle with text between",
                (
                    format!("subject=a\n{p}\n\nsubject=b\n{p2}").into_bytes(),
                    vec!["CERTIFICATE"; 2],
                    vec![d.clone(), d2.clone()],
                ),
            ),
            (
                "certificate and key",
                (
                    format!("{p}{key}").into_bytes(),
                    vec!["CERTIFICATE", "PRIVATE KEY"],
                    vec![d.clone(), key_der.clone()],
                ),
            ),
            (
                "literal \\n escapes (JSON)",
                one(format!("{{\"cert\": \"{}\"}}", p.replace('\n', "\\n"))),
            ),
            (
                "literal \\n escapes (env var)",
                one(format!("KEEP_CERT={}", p.replace('\n', "\\n"))),
            ),
            ("literal \\r\\n escapes", one(p.replace('\n', "\\r\\n"))),
            ("double-escaped \\\\n", one(p.replace('\n', "\\\\n"))),
            (
                "JSON with escaped slashes",
                one(format!(
                    "\"{}\"",
                    p.replace('/', "\\/").replace('\n', "\\n")
                )),
            ),
            (
                "folded onto one line (YAML >)",
                one(p.lines().collect::<Vec<_>>().join(" ")),
            ),
            (
                "folded and indented in YAML",
                one(format!(
                    "cert_pem: >\n  {}\n",
                    p.lines().collect::<Vec<_>>().join(" ")
                )),
            ),
            (
                "one long body line",
                one(format!("{begin}\n{joined}\n{end}\n")),
            ),
            ("16-column lines", one(rewrap(16))),
            ("76-column lines (MIME)", one(rewrap(76))),
            (
                "spaces inside body lines",
                one(map_lines(&p, |l| {
                    if l.starts_with("-----") {
                        l.to_string()
                    } else {
                        l.as_bytes()
                            .chunks(7)
                            .map(|c| String::from_utf8_lossy(c).into_owned())
                            .collect::<Vec<_>>()
                            .join(" ")
                    }
                })),
            ),
            (
                "extra spaces around the label",
                one(p
                    .replace(begin, "-----BEGIN  CERTIFICATE -----")
                    .replace(end, "-----END CERTIFICATE  -----")),
            ),
            (
                "six dashes",
                one(p
                    .replace(begin, "------BEGIN CERTIFICATE------")
                    .replace(end, "------END CERTIFICATE------")),
            ),
            ("UTF-8 byte-order mark", one(format!("\u{feff}{p}"))),
            (
                "no-break spaces (web copy)",
                one(map_lines(&p, |l| format!("\u{a0}\u{a0}{l}\u{a0}"))),
            ),
            (
                "padding stripped",
                (
                    small.replace('=', "").into_bytes(),
                    vec!["DATA"],
                    vec![vec![1, 2, 3, 4]],
                ),
            ),
            (
                "padding kept",
                (
                    small.clone().into_bytes(),
                    vec!["DATA"],
                    vec![vec![1, 2, 3, 4]],
                ),
            ),
        ];

        let utf16_cases = [
            ("UTF-16LE with BOM (PowerShell)", utf16(&p, true)),
            ("UTF-16BE with BOM", utf16(&p.replace('\n', "\r\n"), false)),
        ];
        let all = cases.into_iter().chain(
            utf16_cases
                .into_iter()
                .map(|(name, input)| (name, (input, vec!["CERTIFICATE"], vec![d.clone()]))),
        );

        for (name, (input, labels, ders)) in all {
            let blocks = parse(&input, &src()).map_err(|e| format!("{name}: {e}"))?;
            let got_labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
            assert_eq!(got_labels, labels, "{name}: labels");
            let got_ders: Vec<Vec<u8>> = blocks.iter().map(|b| b.der.to_vec()).collect();
            assert_eq!(got_ders, ders, "{name}: DER");
            assert!(
                blocks.iter().all(|b| b.headers.is_empty()),
                "{name}: no headers"
            );
            if labels.contains(&"CERTIFICATE") {
                let certs =
                    read_certificates(&input, &src()).map_err(|e| format!("{name}: {e}"))?;
                let cert_ders: Vec<Vec<u8>> = certs.iter().map(|b| b.der.to_vec()).collect();
                let want: Vec<Vec<u8>> = ders
                    .iter()
                    .zip(&labels)
                    .filter(|(_, l)| **l == "CERTIFICATE")
                    .map(|(d, _)| d.clone())
                    .collect();
                assert_eq!(cert_ders, want, "{name}: read_certificates");
            }
        }
        Ok(())
    }

    #[test]
    fn line_numbers_refer_to_the_original_input() -> TestResult {
        let (p, _) = cert("a.test")?;
        let (p2, _) = cert("b.test")?;
        let input = format!(
            "subject=a\r\nissuer=a\r\n\r\n{}\r\nsubject=b\r{p2}",
            p.replace('\n', "\r\n")
        );
        let blocks = parse(input.as_bytes(), &src())?;
        let p_lines = p.lines().count();
        let lines: Vec<usize> = blocks.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![4, 4 + p_lines + 2]);
        // With `\n` escapes everything is on line 1 of the original.
        let escaped = format!("x: 1\ncert: \"{}\"\n", p.replace('\n', "\\n"));
        let blocks = parse(escaped.as_bytes(), &src())?;
        assert_eq!(blocks.first().map(|b| b.line), Some(2));
        Ok(())
    }

    #[test]
    fn rfc1421_headers_are_collected_not_decoded() -> TestResult {
        let (p, d) = cert("a.test")?;
        let lines = body(&p).join("\n");
        let plain = format!(
            "-----BEGIN\x20RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: \
             AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\n{lines}\n-----END RSA PRIVATE KEY-----\n"
        );
        let want = vec![
            ("Proc-Type".to_string(), "4,ENCRYPTED".to_string()),
            (
                "DEK-Info".to_string(),
                "AES-256-CBC,00112233445566778899AABBCCDDEEFF".to_string(),
            ),
        ];
        let variants = [
            ("plain", plain.clone()),
            ("CRLF", plain.replace('\n', "\r\n")),
            ("indented", map_lines(&plain, |l| format!("    {l}  "))),
            ("\\n escapes", plain.replace('\n', "\\n")),
            (
                "no blank line after headers",
                plain.replace("EEFF\n\n", "EEFF\n"),
            ),
        ];
        for (name, input) in variants {
            let blocks = parse(input.as_bytes(), &src()).map_err(|e| format!("{name}: {e}"))?;
            let block = blocks.first().ok_or("no block")?;
            assert_eq!(block.label, "RSA PRIVATE KEY", "{name}");
            assert_eq!(block.headers, want, "{name}");
            assert_eq!(block.der.as_slice(), d.as_slice(), "{name}");
        }
        Ok(())
    }

    /// What a rejected input must produce.
    struct Rejected {
        name: &'static str,
        input: Vec<u8>,
        reader: fn(&[u8], &Source) -> Result<Vec<PemBlock>, PemError>,
        kind: fn(&PemErrorKind) -> bool,
        line: Option<usize>,
        words: Vec<String>,
    }

    #[test]
    fn rejected_inputs_name_source_line_and_problem() -> TestResult {
        let (p, d) = cert("a.test")?;
        let (p2, _) = cert("b.test")?;
        let (_, crl_der) = crl()?;
        let n_lines = p.lines().count();
        let without_end: String = p
            .lines()
            .filter(|l| !l.starts_with("-----END"))
            .map(|l| format!("{l}\n"))
            .collect();
        let without_begin: String = p
            .lines()
            .filter(|l| !l.starts_with("-----BEGIN"))
            .map(|l| format!("{l}\n"))
            .collect();
        // Replace the character at (0-based line, 0-based char column) of a text.
        let poke = |text: &str, line: usize, col: usize, ch: char| -> String {
            text.split('\n')
                .enumerate()
                .map(|(i, l)| {
                    if i == line {
                        l.chars()
                            .enumerate()
                            .map(|(j, c)| if j == col { ch } else { c })
                            .collect()
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<String>>()
                .join("\n")
        };
        let escaped = format!("{{\"cert\": \"{}\"}}", p.replace('\n', "\\n"));
        // Column of the 12th character of the second body line inside the one-line JSON.
        let second_body = body(&p).get(1).copied().unwrap_or_default().to_string();
        let escaped_col = escaped.find(&second_body).ok_or("body not found")? + 12;
        let truncated: String = {
            let mut v: Vec<&str> = p.lines().collect();
            let end = v.pop().unwrap_or_default();
            v.truncate(v.len().saturating_sub(2));
            v.push(end);
            v.join("\n") + "\n"
        };
        let thirty_one = encode("DATA", &[7u8; 31]); // 42 digits + "=="
        let key = key_pem()?;
        let garbage_label = "-----BEGIN CERT\u{1}IFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let mut with_trailing = d.clone();
        with_trailing.extend_from_slice(&[0x05, 0x00]);

        let cases = vec![
            Rejected {
                name: "empty input",
                input: b"".to_vec(),
                reader: parse,
                kind: |k| *k == PemErrorKind::EmptyInput,
                line: None,
                words: vec!["empty".into()],
            },
            Rejected {
                name: "whitespace only",
                input: b" \r\n\t\n".to_vec(),
                reader: read_certificates,
                kind: |k| *k == PemErrorKind::EmptyInput,
                line: None,
                words: vec!["empty".into()],
            },
            Rejected {
                name: "no BEGIN at all",
                input: b"hello\nworld\n".to_vec(),
                reader: parse,
                kind: |k| {
                    *k == PemErrorKind::NoPemFound {
                        looks_like_der: false,
                    }
                },
                line: None,
                words: vec!["no PEM block".into(), "-----BEGIN".into()],
            },
            Rejected {
                name: "binary DER given to parse",
                input: d.clone(),
                reader: parse,
                kind: |k| {
                    *k == PemErrorKind::NoPemFound {
                        looks_like_der: true,
                    }
                },
                line: None,
                words: vec!["binary DER".into(), "openssl".into()],
            },
            Rejected {
                name: "BEGIN without END",
                input: format!("subject=a\n\n{without_end}").into_bytes(),
                reader: parse,
                kind: |k| matches!(k, PemErrorKind::MissingEnd { label } if label == "CERTIFICATE"),
                line: Some(3),
                words: vec!["BEGIN CERTIFICATE".into(), "no matching END".into()],
            },
            Rejected {
                name: "second BEGIN before END",
                input: format!("{without_end}{p2}").into_bytes(),
                reader: parse,
                kind: |k| matches!(k, PemErrorKind::MissingEnd { .. }),
                line: Some(1),
                words: vec!["no matching END".into()],
            },
            Rejected {
                name: "END without BEGIN",
                input: format!("{p}{without_begin}").into_bytes(),
                reader: read_certificates,
                kind: |k| matches!(k, PemErrorKind::MissingBegin { .. }),
                line: Some(2 * n_lines - 1),
                words: vec!["no BEGIN".into()],
            },
            Rejected {
                name: "mismatched END",
                input: p
                    .replace("-----END CERTIFICATE-----", "-----END PRIVATE KEY-----")
                    .into_bytes(),
                reader: parse,
                kind: |k| {
                    matches!(k, PemErrorKind::MismatchedEnd { begin, end }
                        if begin == "CERTIFICATE" && end == "PRIVATE KEY")
                },
                line: Some(n_lines),
                words: vec!["mismatched END".into(), "PRIVATE KEY".into()],
            },
            Rejected {
                name: "invalid base64 character",
                input: poke(&p, 2, 11, '!').into_bytes(),
                reader: parse,
                kind: |k| {
                    *k == PemErrorKind::InvalidBase64 {
                        ch: '!',
                        column: 12,
                    }
                },
                line: Some(3),
                words: vec![
                    "invalid base64 character '!' at column 12".into(),
                    "A-Z a-z 0-9".into(),
                ],
            },
            Rejected {
                name: "invalid character, indented CRLF input",
                input: poke(&map_lines(&p, |l| format!("    {l}\r")), 2, 15, '*').into_bytes(),
                reader: read_certificates,
                kind: |k| {
                    *k == PemErrorKind::InvalidBase64 {
                        ch: '*',
                        column: 16,
                    }
                },
                line: Some(3),
                words: vec!["'*' at column 16".into()],
            },
            Rejected {
                name: "invalid character inside a \\n-escaped one-liner",
                input: {
                    let mut s = escaped.clone();
                    s.replace_range(escaped_col - 1..escaped_col, "!");
                    s.into_bytes()
                },
                reader: parse,
                kind: |k| matches!(k, PemErrorKind::InvalidBase64 { ch: '!', .. }),
                line: Some(1),
                words: vec![format!("column {escaped_col}")],
            },
            Rejected {
                name: "non-ASCII character counted in characters",
                input: poke(
                    &map_lines(&p, |l| format!("\u{a0}\u{a0}{l}")),
                    2,
                    6,
                    '\u{2019}',
                )
                .into_bytes(),
                reader: parse,
                kind: |k| {
                    *k == PemErrorKind::InvalidBase64 {
                        ch: '\u{2019}',
                        column: 7,
                    }
                },
                line: Some(3),
                words: vec!["U+2019 at column 7".into()],
            },
            Rejected {
                name: "empty body",
                input: b"x\n-----BEGIN CERTIFICATE-----\n\n  \n-----END CERTIFICATE-----\n"
                    .to_vec(),
                reader: parse,
                kind: |k| matches!(k, PemErrorKind::EmptyBody { .. }),
                line: Some(2),
                words: vec!["CERTIFICATE block is empty".into()],
            },
            Rejected {
                name: "base64 length impossible",
                input: format!(
                    "-----BEGIN DATA-----\n{}\n-----END DATA-----\n",
                    body(&thirty_one).concat().get(1..).unwrap_or_default()
                )
                .into_bytes(),
                reader: parse,
                kind: |k| *k == PemErrorKind::BadLength,
                line: Some(1),
                words: vec!["impossible length".into()],
            },
            Rejected {
                name: "too much padding",
                input: b"-----BEGIN DATA-----\nAQ===\n-----END DATA-----\n".to_vec(),
                reader: parse,
                kind: |k| *k == PemErrorKind::BadLength,
                line: Some(1),
                words: vec!["impossible length".into()],
            },
            Rejected {
                name: "data after padding",
                input: b"-----BEGIN DATA-----\nAQI=\nAQID\n-----END DATA-----\n".to_vec(),
                reader: parse,
                kind: |k| *k == PemErrorKind::InvalidBase64 { ch: '=', column: 4 },
                line: Some(2),
                words: vec!["padding '=' at column 4".into()],
            },
            Rejected {
                name: "truncated body",
                input: truncated.clone().into_bytes(),
                reader: read_certificates,
                kind: |k| matches!(k, PemErrorKind::InvalidDer { label, .. } if label == "CERTIFICATE"),
                line: Some(1),
                words: vec!["not valid DER".into(), "truncated".into()],
            },
            Rejected {
                name: "trailing data after the certificate",
                input: encode("CERTIFICATE", &with_trailing).into_bytes(),
                reader: read_certificates,
                kind: |k| matches!(k, PemErrorKind::InvalidDer { .. }),
                line: Some(1),
                words: vec!["2 bytes of trailing data".into()],
            },
            Rejected {
                name: "key where a certificate is expected",
                input: key.clone().into_bytes(),
                reader: read_certificates,
                kind: |k| {
                    matches!(k, PemErrorKind::UnexpectedLabel { expected, found }
                        if expected == "CERTIFICATE" && found == "PRIVATE KEY")
                },
                line: Some(1),
                words: vec![
                    "expected a CERTIFICATE block but found PRIVATE KEY".into(),
                    "this is a private key".into(),
                ],
            },
            Rejected {
                name: "certificate where a CRL is expected",
                input: p.clone().into_bytes(),
                reader: read_crls,
                kind: |k| matches!(k, PemErrorKind::UnexpectedLabel { expected, .. } if expected == "X509 CRL"),
                line: Some(1),
                words: vec!["expected a X509 CRL block".into()],
            },
            Rejected {
                name: "BEGIN line without closing dashes",
                input: p
                    .replacen("-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE", 1)
                    .into_bytes(),
                reader: parse,
                kind: |k| matches!(k, PemErrorKind::MalformedMarker { .. }),
                line: Some(1),
                words: vec!["malformed marker".into(), "five dashes".into()],
            },
            Rejected {
                name: "END line with four dashes",
                input: p
                    .replace("-----END CERTIFICATE-----", "----END CERTIFICATE-----")
                    .into_bytes(),
                reader: parse,
                kind: |k| matches!(k, PemErrorKind::MalformedMarker { .. }),
                line: Some(n_lines),
                words: vec!["END line".into()],
            },
            Rejected {
                name: "control character in the label",
                input: garbage_label.as_bytes().to_vec(),
                reader: parse,
                kind: |k| matches!(k, PemErrorKind::MalformedMarker { .. }),
                line: Some(1),
                words: vec!["U+0001".into()],
            },
            Rejected {
                name: "binary garbage given to read_certificates",
                input: vec![0x30, 0x82, 0x10, 0x00, 1, 2, 3],
                reader: read_certificates,
                kind: |k| matches!(k, PemErrorKind::InvalidDer { .. }),
                line: None,
                words: vec!["binary input".into(), "truncated".into()],
            },
            Rejected {
                name: "truncated DER file",
                input: d.get(..d.len() - 10).unwrap_or_default().to_vec(),
                reader: read_certificates,
                kind: |k| matches!(k, PemErrorKind::InvalidDer { .. }),
                line: None,
                words: vec!["truncated".into()],
            },
            Rejected {
                name: "CRL DER given as certificate",
                input: crl_der.clone(),
                reader: read_certificates,
                kind: |k| matches!(k, PemErrorKind::InvalidDer { .. }),
                line: None,
                words: vec!["binary input".into()],
            },
        ];

        for case in cases {
            let name = case.name;
            let err = match (case.reader)(&case.input, &src()) {
                Ok(blocks) => return Err(format!("{name}: accepted: {blocks:?}").into()),
                Err(err) => err,
            };
            let msg = err.to_string();
            assert!(
                (case.kind)(&err.kind),
                "{name}: wrong kind {:?} ({msg})",
                err.kind
            );
            assert_eq!(err.line, case.line, "{name}: line ({msg})");
            assert!(msg.starts_with("file vault.crt"), "{name}: source: {msg}");
            match case.line {
                Some(line) => assert!(msg.contains(&format!(", line {line}: ")), "{name}: {msg}"),
                None => assert!(!msg.contains(", line "), "{name}: {msg}"),
            }
            for word in &case.words {
                assert!(
                    msg.contains(word.as_str()),
                    "{name}: {word:?} missing from: {msg}"
                );
            }
            assert!(msg.contains("; fix: "), "{name}: no fix: {msg}");
            assert!(
                !msg.contains('\n') && !msg.contains('\r'),
                "{name}: not one line: {msg}"
            );
        }

        // The PEM layer alone accepts a truncated body; only the DER check catches it.
        assert!(parse(truncated.as_bytes(), &src()).is_ok());
        Ok(())
    }

    #[test]
    fn message_matches_the_documented_example() {
        let err = PemError::new(
            &src(),
            Some(7),
            PemErrorKind::InvalidBase64 {
                ch: '!',
                column: 12,
            },
        );
        assert_eq!(
            err.to_string(),
            "file vault.crt, line 7: invalid base64 character '!' at column 12; fix: re-copy the \
             PEM exactly, only A-Z a-z 0-9 + / = may appear between the BEGIN and END lines"
        );
        let err = PemError::new(
            &Source::Field("mtls.cert_pem".into()),
            None,
            PemErrorKind::EmptyInput,
        );
        assert!(
            err.to_string()
                .starts_with("config field `mtls.cert_pem`: the input is empty; fix: ")
        );
        assert_eq!(Source::Stdin.to_string(), "standard input");
        assert_eq!(
            Source::Other("vault response".into()).to_string(),
            "vault response"
        );
        // Not a cause chain: the source is where the text came from, not an underlying error.
        assert!(std::error::Error::source(&err).is_none());
    }

    #[test]
    fn every_kind_has_a_one_line_message_and_fix() {
        let kinds = [
            PemErrorKind::EmptyInput,
            PemErrorKind::NoPemFound {
                looks_like_der: true,
            },
            PemErrorKind::NoPemFound {
                looks_like_der: false,
            },
            PemErrorKind::MissingEnd { label: "X".into() },
            PemErrorKind::MissingBegin { label: "X".into() },
            PemErrorKind::MismatchedEnd {
                begin: "X".into(),
                end: "Y".into(),
            },
            PemErrorKind::MalformedMarker {
                problem: "p".into(),
            },
            PemErrorKind::InvalidBase64 {
                ch: '\u{7}',
                column: 1,
            },
            PemErrorKind::InvalidBase64 { ch: '=', column: 1 },
            PemErrorKind::EmptyBody { label: "X".into() },
            PemErrorKind::BadLength,
            PemErrorKind::UnexpectedLabel {
                expected: "CERTIFICATE".into(),
                found: "CERTIFICATE REQUEST".into(),
            },
            PemErrorKind::UnexpectedLabel {
                expected: "CERTIFICATE".into(),
                found: "PKCS7".into(),
            },
            PemErrorKind::UnexpectedLabel {
                expected: "CERTIFICATE".into(),
                found: "FOO".into(),
            },
            PemErrorKind::InvalidDer {
                label: "X".into(),
                problem: "p".into(),
            },
        ];
        for kind in kinds {
            let msg = PemError::new(&Source::Stdin, Some(1), kind.clone()).to_string();
            assert!(!kind.fix().is_empty(), "{kind:?}");
            assert!(!msg.contains('\n') && !msg.contains('\u{7}'), "{msg}");
            assert!(msg.starts_with("standard input, line 1: "), "{msg}");
        }
    }

    #[test]
    fn read_certificates_accepts_der_aliases_and_skips_other_blocks() -> TestResult {
        let (p, d) = cert("a.test")?;
        let key = key_pem()?;

        let der = read_certificates(&d, &src())?;
        assert_eq!(der.len(), 1);
        assert_eq!(
            der.first().map(|b| (b.line, b.label.as_str())),
            Some((0, "CERTIFICATE"))
        );
        assert_eq!(der.first().map(|b| b.der.to_vec()), Some(d.clone()));

        // OpenSSL's TRUSTED CERTIFICATE carries trust settings after the certificate.
        let mut trusted = d.clone();
        trusted.extend_from_slice(&[0x30, 0x00]);
        for input in [
            encode("X509 CERTIFICATE", &d),
            encode("TRUSTED CERTIFICATE", &trusted),
        ] {
            let certs = read_certificates(input.as_bytes(), &src())?;
            assert_eq!(certs.len(), 1);
            assert_eq!(certs.first().map(|b| b.label.as_str()), Some("CERTIFICATE"));
            assert_eq!(certs.first().map(|b| b.der.to_vec()), Some(d.clone()));
        }

        let mixed = format!("{key}{p}{key}{p}");
        let certs = read_certificates(mixed.as_bytes(), &src())?;
        let lines: Vec<usize> = certs.iter().map(|b| b.line).collect();
        let key_lines = key.lines().count();
        let p_lines = p.lines().count();
        assert_eq!(lines, vec![key_lines + 1, 2 * key_lines + p_lines + 1]);
        Ok(())
    }

    #[test]
    fn read_crls_accepts_pem_and_der() -> TestResult {
        let (pem, der) = crl()?;
        let from_pem = read_crls(
            format!("  {}", pem.replace('\n', "\r\n  ")).as_bytes(),
            &src(),
        )?;
        assert_eq!(from_pem.first().map(|b| b.der.to_vec()), Some(der.clone()));
        let from_der = read_crls(&der, &src())?;
        assert_eq!(
            from_der.first().map(|b| (b.line, b.der.to_vec())),
            Some((0, der))
        );
        Ok(())
    }

    #[test]
    fn debug_does_not_print_der() -> TestResult {
        let (p, d) = cert("a.test")?;
        let blocks = parse(p.as_bytes(), &src())?;
        let shown = format!("{:?}", blocks.first().ok_or("no block")?);
        assert!(shown.contains(&format!("der_len: {}", d.len())), "{shown}");
        assert!(!shown.contains("48, 130"), "{shown}");
        Ok(())
    }

    #[test]
    fn encode_is_canonical_and_round_trips() -> TestResult {
        // RFC 4648 test vectors.
        for (raw, b64) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let body = if b64.is_empty() {
                String::new()
            } else {
                format!("{b64}\n")
            };
            assert_eq!(
                encode("T", raw.as_bytes()),
                format!("-----BEGIN T-----\n{body}-----END T-----\n")
            );
        }
        let all_bytes: Vec<u8> = (0..=255u8).collect();
        for len in [1, 2, 3, 47, 48, 49, 50, 256] {
            let data = all_bytes
                .iter()
                .cycle()
                .take(len)
                .copied()
                .collect::<Vec<u8>>();
            let text = encode("DATA", &data);
            let blocks = parse(text.as_bytes(), &src())?;
            assert_eq!(
                blocks.first().map(|b| b.der.to_vec()),
                Some(data),
                "len {len}"
            );
        }

        let (p, d) = cert("a.test")?;
        let mangled = format!("junk\r\n{}", map_lines(&p, |l| format!("\t  {l} \r")));
        let blocks = parse(mangled.as_bytes(), &src())?;
        let block = blocks.first().ok_or("no block")?;
        let out = encode(&block.label, &block.der);
        assert_eq!(
            out,
            p.replace("\r\n", "\n"),
            "same text as rcgen's canonical PEM"
        );
        assert!(out.ends_with("-----END CERTIFICATE-----\n"));
        assert!(!out.contains('\r'));
        let body_lines = body(&out);
        let (last, full) = body_lines.split_last().ok_or("no body")?;
        assert!(full.iter().all(|l| l.len() == 64));
        assert!(!last.is_empty() && last.len() <= 64);
        let again = parse(out.as_bytes(), &src())?;
        assert_eq!(again.first().map(|b| b.der.to_vec()), Some(d));
        Ok(())
    }

    /// Tiny deterministic PRNG (xorshift64) so the garbage test is reproducible.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn try_all(input: &[u8]) {
        // Only absence of panics matters here; results are checked elsewhere.
        let _ = parse(input, &src())
            .map(|b| b.len())
            .map_err(|e| e.to_string());
        let _ = read_certificates(input, &src()).map_err(|e| e.to_string());
        let _ = read_crls(input, &src()).map_err(|e| e.to_string());
    }

    #[test]
    fn garbage_never_panics() -> TestResult {
        let (p, _) = cert("a.test")?;
        let (crl_pem, _) = crl()?;
        let headers = "-----BEGIN\x20RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: A,B\n\nAQID\n-----END RSA PRIVATE KEY-----\n";
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let pieces: [&[u8]; 16] = [
            b"-----BEGIN ",
            b"-----END ",
            b"CERTIFICATE",
            b"-----",
            b"\\n",
            b"\\r\\n",
            b"\r",
            b"\n",
            b"=",
            b":",
            b" ",
            b"MIIB",
            b"\xc2\xa0",
            b"\xff\xfe",
            b"\\/",
            b"0",
        ];
        for _ in 0..3000 {
            let len = usize::try_from(rng.next() % 200).unwrap_or(0);
            let mut input = Vec::new();
            if rng.next().is_multiple_of(4) {
                input.extend_from_slice(if rng.next().is_multiple_of(2) {
                    b"\xff\xfe"
                } else {
                    b"\x30\x82"
                });
            }
            while input.len() < len {
                let r = rng.next();
                if r.is_multiple_of(3) {
                    input.push(r.to_le_bytes().get(3).copied().unwrap_or(0));
                } else {
                    let i = usize::try_from((r >> 8) % 16).unwrap_or(0);
                    input.extend_from_slice(pieces.get(i).copied().unwrap_or_default());
                }
            }
            try_all(&input);
        }
        for text in [p.as_str(), crl_pem.as_str(), headers] {
            let variants = [
                text.as_bytes().to_vec(),
                text.replace('\n', "\\n").into_bytes(),
                utf16(text, true),
            ];
            for bytes in variants {
                for cut in 0..=bytes.len() {
                    try_all(bytes.get(..cut).unwrap_or_default());
                    try_all(bytes.get(cut..).unwrap_or_default());
                }
            }
        }
        Ok(())
    }
}
