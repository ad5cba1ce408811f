//! The directory document meta-format (dir-spec §1.2): a tokenizer.
//!
//! ```text
//! Document ::= (Item | NL)+          Item ::= KeywordLine Object?
//! KeywordLine ::= Keyword (WS Argument)* NL
//! Object ::= "-----BEGIN " Tag "-----" NL base64 lines "-----END " Tag "-----" NL
//! ```
//!
//! [`tokenize`] splits a document into [`Item`]s, each with its keyword, its raw argument
//! text, its line number, its byte offsets in the document (signatures cover byte ranges of
//! the original text) and its decoded object. It never panics and is bounded by [`Limits`]:
//! document size, line length, item count and object size. Empty lines are skipped (the
//! spec's `NL` alternative: C tor emits a trailing blank line after some documents). ASCII
//! control characters other than TAB are refused everywhere; non-ASCII UTF-8 is allowed in
//! arguments (e.g. `contact`), as C tor allows it.

use base64ct::{Base64Unpadded, Encoding};

use super::{DirError, DirResult};

/// Size bounds for [`tokenize`]: the tokenizer's memory is bounded by `max_items` items
/// (about 120 bytes each) plus the decoded objects, each at most `max_object_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document, in bytes.
    pub max_len: usize,
    /// Most items in the document.
    pub max_items: usize,
    /// Longest line, in bytes, without its newline.
    pub max_line_len: usize,
    /// Largest object, in bytes of base64 text.
    pub max_object_len: usize,
}

impl Limits {
    /// One server descriptor: dir-spec §2.1 caps them at 20,000 bytes; C tor's
    /// `MAX_DESCRIPTOR_UPLOAD_SIZE` is the same.
    pub const SERVER_DESCRIPTOR: Limits = Limits {
        max_len: 20_000,
        max_items: 1_000,
        max_line_len: 8_192,
        max_object_len: 4_096,
    };
    /// A list of concatenated server descriptors (e.g. `/tor/server/all`).
    pub const SERVER_DESCRIPTORS: Limits = Limits {
        max_len: 16 << 20,
        max_items: 400_000,
        max_line_len: 8_192,
        max_object_len: 4_096,
    };
    /// A consensus (either flavor): the public network's are a few MB.
    pub const CONSENSUS: Limits = Limits {
        max_len: 16 << 20,
        max_items: 200_000,
        max_line_len: 16_384,
        max_object_len: 4_096,
    };
    /// A batch of microdescriptors (`/tor/micro/d/...` answers, or a whole cache).
    pub const MICRODESCS: Limits = Limits {
        max_len: 16 << 20,
        max_items: 200_000,
        max_line_len: 8_192,
        max_object_len: 4_096,
    };
    /// One or more authority key certificates (`/tor/keys/all`).
    pub const AUTHORITY_CERTS: Limits = Limits {
        max_len: 1 << 20,
        max_items: 10_000,
        max_line_len: 8_192,
        max_object_len: 8_192,
    };
}

/// The object following a keyword line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<'a> {
    tag: &'a str,
    data: Vec<u8>,
    line: usize,
}

impl<'a> Object<'a> {
    /// The tag of the `BEGIN` / `END` lines, e.g. `RSA PUBLIC KEY`.
    pub fn tag(&self) -> &'a str {
        self.tag
    }

    /// The decoded base64 contents.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Line number of the `BEGIN` line.
    pub fn line(&self) -> usize {
        self.line
    }
}

/// One item: a keyword line and its optional object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    keyword: &'a str,
    args: &'a str,
    line: usize,
    start: usize,
    line_end: usize,
    end: usize,
    object: Option<Object<'a>>,
}

impl<'a> Item<'a> {
    /// The keyword.
    pub fn keyword(&self) -> &'a str {
        self.keyword
    }

    /// Everything after the keyword and the whitespace that follows it, without trailing
    /// whitespace (e.g. the whole `platform` or `contact` string).
    pub fn args_str(&self) -> &'a str {
        self.args
    }

    /// The arguments, split on spaces and tabs.
    pub fn args(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.args.split([' ', '\t']).filter(|a| !a.is_empty())
    }

    /// The `i`-th argument (0-based), if present.
    pub fn arg(&self, i: usize) -> Option<&'a str> {
        self.args().nth(i)
    }

    /// How many arguments there are.
    pub fn n_args(&self) -> usize {
        self.args().count()
    }

    /// 1-based line number of the keyword line.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Byte offset of the keyword in the document.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Byte offset just after the keyword line's newline.
    pub fn line_end(&self) -> usize {
        self.line_end
    }

    /// Byte offset just after the keyword and one following character (the space that
    /// `router-sig-ed25519` and `directory-signature` signatures stop at).
    pub fn keyword_end_plus_one(&self) -> usize {
        self.start
            .saturating_add(self.keyword.len())
            .saturating_add(1)
            .min(self.line_end)
    }

    /// Byte offset just after the whole item (its object's `END` line included).
    pub fn end(&self) -> usize {
        self.end
    }

    /// The object, if any.
    pub fn object(&self) -> Option<&Object<'a>> {
        self.object.as_ref()
    }
}

/// Whether `s` is a keyword: `[A-Za-z0-9][A-Za-z0-9-]*`.
pub fn is_keyword(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether `s` is an object tag: keywords separated by single spaces.
fn is_object_tag(s: &str) -> bool {
    !s.is_empty() && s.split(' ').all(is_keyword)
}

/// One line of the input, without its newline.
struct Line<'a> {
    text: &'a str,
    start: usize,
    /// Offset just after the newline.
    next: usize,
    number: usize,
}

/// Iterates over newline-terminated lines, checking length and characters.
struct Lines<'a> {
    text: &'a str,
    pos: usize,
    number: usize,
    max_line_len: usize,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Option<DirResult<Line<'a>>> {
        let rest = self.text.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        self.number = self.number.saturating_add(1);
        let number = self.number;
        let Some(len) = rest.find('\n') else {
            self.pos = self.text.len();
            return Some(Err(DirError::Syntax {
                line: number,
                what: "last line does not end with a newline",
            }));
        };
        if len > self.max_line_len {
            self.pos = self.text.len();
            return Some(Err(DirError::TooLarge {
                what: "line",
                len,
                max: self.max_line_len,
            }));
        }
        let text = rest.get(..len).unwrap_or("");
        if text.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            self.pos = self.text.len();
            return Some(Err(DirError::Syntax {
                line: number,
                what: "control character",
            }));
        }
        let start = self.pos;
        self.pos = start.saturating_add(len).saturating_add(1);
        Some(Ok(Line {
            text,
            start,
            next: self.pos,
            number,
        }))
    }
}

/// Split `text` into items. See the [module documentation](self).
pub fn tokenize<'a>(text: &'a str, limits: &Limits) -> DirResult<Vec<Item<'a>>> {
    if text.len() > limits.max_len {
        return Err(DirError::TooLarge {
            what: "document",
            len: text.len(),
            max: limits.max_len,
        });
    }
    let mut lines = Lines {
        text,
        pos: 0,
        number: 0,
        max_line_len: limits.max_line_len,
    };
    let mut items: Vec<Item<'a>> = Vec::new();
    while let Some(line) = lines.next_line() {
        let line = line?;
        if line.text.is_empty() {
            continue;
        }
        let syntax = |what| DirError::Syntax {
            line: line.number,
            what,
        };
        if line.text.starts_with("-----") {
            return Err(syntax("object without a keyword line"));
        }
        let (keyword, args) = match line.text.find([' ', '\t']) {
            Some(i) => (
                line.text.get(..i).unwrap_or(""),
                line.text.get(i..).unwrap_or(""),
            ),
            None => (line.text, ""),
        };
        if !is_keyword(keyword) {
            return Err(syntax("bad keyword"));
        }
        let args = args.trim_matches([' ', '\t']);
        if items.len() >= limits.max_items {
            return Err(DirError::TooLarge {
                what: "item count",
                len: items.len().saturating_add(1),
                max: limits.max_items,
            });
        }
        // An object follows if the next line is a BEGIN line.
        let object = if text
            .get(line.next..)
            .is_some_and(|r| r.starts_with("-----BEGIN "))
        {
            Some(read_object(&mut lines, limits)?)
        } else {
            None
        };
        items.push(Item {
            keyword,
            args,
            line: line.number,
            start: line.start,
            line_end: line.next,
            end: lines.pos,
            object,
        });
    }
    Ok(items)
}

/// Read an object whose `BEGIN` line is the next line.
fn read_object<'a>(lines: &mut Lines<'a>, limits: &Limits) -> DirResult<Object<'a>> {
    let begin = match lines.next_line() {
        Some(l) => l?,
        None => {
            return Err(DirError::Syntax {
                line: lines.number,
                what: "missing object",
            });
        }
    };
    let tag = begin
        .text
        .strip_prefix("-----BEGIN ")
        .and_then(|t| t.strip_suffix("-----"))
        .filter(|t| is_object_tag(t))
        .ok_or(DirError::Syntax {
            line: begin.number,
            what: "malformed object BEGIN line",
        })?;
    let mut b64 = String::new();
    loop {
        let line = match lines.next_line() {
            Some(l) => l?,
            None => {
                return Err(DirError::Syntax {
                    line: begin.number,
                    what: "object without END line",
                });
            }
        };
        if let Some(rest) = line.text.strip_prefix("-----END ") {
            if rest.strip_suffix("-----") != Some(tag) {
                return Err(DirError::Syntax {
                    line: line.number,
                    what: "object END line does not match its BEGIN line",
                });
            }
            break;
        }
        if !line
            .text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        {
            return Err(DirError::Syntax {
                line: line.number,
                what: "bad character in object",
            });
        }
        if b64.len().saturating_add(line.text.len()) > limits.max_object_len {
            return Err(DirError::TooLarge {
                what: "object",
                len: b64.len().saturating_add(line.text.len()),
                max: limits.max_object_len,
            });
        }
        b64.push_str(line.text);
    }
    let data =
        Base64Unpadded::decode_vec(b64.trim_end_matches('=')).map_err(|_| DirError::Syntax {
            line: begin.number,
            what: "object is not valid base64",
        })?;
    Ok(Object {
        tag,
        data,
        line: begin.number,
    })
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use proptest::prelude::*;

    const L: Limits = Limits::SERVER_DESCRIPTOR;

    #[test]
    fn items_args_objects_offsets() {
        let doc = "a 1  2\tthree \n\nb\n-----BEGIN X Y-----\nAAEC\nAw==\n-----END X Y-----\nc-d\n";
        let items = tokenize(doc, &L).unwrap();
        assert_eq!(items.len(), 3);
        let a = &items[0];
        assert_eq!(a.keyword(), "a");
        assert_eq!(a.args_str(), "1  2\tthree");
        assert_eq!(a.args().collect::<Vec<_>>(), ["1", "2", "three"]);
        assert_eq!(a.n_args(), 3);
        assert_eq!(a.arg(1), Some("2"));
        assert_eq!(a.arg(3), None);
        assert_eq!((a.line(), a.start(), a.line_end(), a.end()), (1, 0, 14, 14));
        assert_eq!(a.keyword_end_plus_one(), 2);
        let b = &items[1];
        assert_eq!((b.keyword(), b.line(), b.n_args()), ("b", 3, 0));
        let o = b.object().unwrap();
        assert_eq!((o.tag(), o.data(), o.line()), ("X Y", &[0, 1, 2, 3][..], 4));
        assert_eq!(&doc[b.start()..b.line_end()], "b\n");
        assert_eq!(&doc[b.end()..], "c-d\n");
        assert_eq!(items[2].line(), 8);
        assert!(items[2].object().is_none());
    }

    #[test]
    fn empty_argument_line() {
        // C tor's consensus has "client-versions " with an empty list.
        let items = tokenize("client-versions \n", &L).unwrap();
        assert_eq!(items[0].n_args(), 0);
        assert_eq!(items[0].args_str(), "");
    }

    #[test]
    fn rejections() {
        let bad = |doc: &str| tokenize(doc, &L).unwrap_err();
        assert_eq!(
            bad("a\nb"),
            DirError::Syntax {
                line: 2,
                what: "last line does not end with a newline"
            }
        );
        assert!(matches!(bad("-a\n"), DirError::Syntax { line: 1, .. }));
        assert!(matches!(bad("a\n b\n"), DirError::Syntax { line: 2, .. }));
        assert!(matches!(bad("a_b\n"), DirError::Syntax { line: 1, .. }));
        assert!(matches!(bad("a\r\n"), DirError::Syntax { line: 1, .. }));
        assert!(matches!(bad("a\0\n"), DirError::Syntax { line: 1, .. }));
        assert!(matches!(
            bad("-----BEGIN X-----\n"),
            DirError::Syntax { line: 1, .. }
        ));
        assert_eq!(
            bad("a\n-----BEGIN X-----\nAAAA\n"),
            DirError::Syntax {
                line: 2,
                what: "object without END line"
            }
        );
        assert_eq!(
            bad("a\n-----BEGIN X-----\nAAAA\n-----END Y-----\n"),
            DirError::Syntax {
                line: 4,
                what: "object END line does not match its BEGIN line"
            }
        );
        assert!(matches!(
            bad("a\n-----BEGIN X-----\nAA*A\n-----END X-----\n"),
            DirError::Syntax { line: 3, .. }
        ));
        assert!(matches!(
            bad("a\n-----BEGIN X-----\nA\n-----END X-----\n"),
            DirError::Syntax { line: 2, .. }
        ));
        assert!(matches!(
            bad("a\n-----BEGIN x  y-----\nAAAA\n-----END x  y-----\n"),
            DirError::Syntax { line: 2, .. }
        ));
    }

    #[test]
    fn limits() {
        let small = Limits {
            max_len: 100,
            max_items: 2,
            max_line_len: 20,
            max_object_len: 8,
        };
        assert!(matches!(
            tokenize(&"a\n".repeat(60), &small),
            Err(DirError::TooLarge {
                what: "document",
                ..
            })
        ));
        assert!(matches!(
            tokenize("a\nb\nc\n", &small),
            Err(DirError::TooLarge {
                what: "item count",
                ..
            })
        ));
        assert!(matches!(
            tokenize("a 12345678901234567890\n", &small),
            Err(DirError::TooLarge { what: "line", .. })
        ));
        assert!(matches!(
            tokenize(
                "a\n-----BEGIN X-----\nAAAAAAAA\nAAAA\n-----END X-----\n",
                &small
            ),
            Err(DirError::TooLarge { what: "object", .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = tokenize(&s, &L);
        }

        #[test]
        fn never_panics_on_plausible_documents(
            lines in proptest::collection::vec(
                prop_oneof![
                    "[a-z-]{0,6}( [ -~]{0,8}){0,3}",
                    Just("-----BEGIN A B-----".to_owned()),
                    Just("-----END A B-----".to_owned()),
                    "[A-Za-z0-9+/=]{0,12}",
                    Just(String::new()),
                ],
                0..30,
            ),
            newline_at_end in any::<bool>(),
        ) {
            let mut s = lines.join("\n");
            if newline_at_end {
                s.push('\n');
            }
            if let Ok(items) = tokenize(&s, &L) {
                for it in &items {
                    prop_assert!(it.start() < it.line_end() && it.line_end() <= it.end());
                    prop_assert!(it.end() <= s.len());
                    prop_assert!(s[it.start()..].starts_with(it.keyword()));
                }
            }
        }
    }
}
